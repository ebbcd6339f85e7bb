-- Refusals as an independent MTA client sees them: a declared SIZE= over the cap
-- is refused at MAIL with 552 5.3.4; an executable attachment at end of message
-- with 550 5.7.1.
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 40, 0.25)
assert(conn, "cannot connect to congvu-milter")
assert(mt.negotiate(conn, nil, nil, nil) == nil)
assert(mt.conninfo(conn, "client.example.org", "192.0.2.8") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE)
assert(mt.helo(conn, "client.example.org") == nil)

-- SIZE= far above max_message_size (25 MiB by default).
assert(mt.mailfrom(conn, "<sender@example.org>", "SIZE=999999999") == nil)
assert(mt.getreply(conn) == SMFIR_REPLYCODE, "SIZE over the cap must be refused at MAIL")
assert(mt.abort(conn) == nil)

-- An executable attachment.
mt.macro(conn, SMFIC_MAIL, "i", "MT2EXE")
assert(mt.mailfrom(conn, "<sender@example.org>") == nil)
assert(mt.getreply(conn) == SMFIR_CONTINUE)
assert(mt.rcptto(conn, "<nguoidung@bacgiang.gov.vn>") == nil)
assert(mt.header(conn, "From", "sender@example.org") == nil)
assert(mt.header(conn, "MIME-Version", "1.0") == nil)
assert(mt.header(conn, "Content-Type", "multipart/mixed; boundary=\"b1\"") == nil)
assert(mt.eoh(conn) == nil)
assert(mt.bodystring(conn, "--b1\r\nContent-Type: text/plain\r\n\r\nxem tep\r\n" ..
  "--b1\r\nContent-Type: application/octet-stream; name=\"cai-dat.exe\"\r\n" ..
  "Content-Disposition: attachment; filename=\"cai-dat.exe\"\r\n\r\nhello\r\n--b1--\r\n") == nil)
assert(mt.eom(conn) == nil)
assert(mt.getreply(conn) == SMFIR_REPLYCODE, "executable must be refused")
assert(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Tep dinh kem \"cai-dat.exe\" la tep thuc thi, bi cam (Quy che, Dieu 4 khoan 7) / executable attachment not allowed"), "expected 550 5.7.1 naming the file")
mt.disconnect(conn)
