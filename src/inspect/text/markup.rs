//! Text out of markup, one line per block: XML of Office Open XML and
//! OpenDocument files, and HTML (tags stripped, blocks and `<br>` end lines,
//! `<script>` and `<style>` skipped). A single pass with no recursion and no
//! tree: tags are recognised by name only, which is all the stamps need.

use super::stamp::StampFinder;
use crate::inspect::budget::Budget;

/// The element names a markup language uses for lines.
pub struct Vocabulary {
    /// Elements whose start and end end a line (paragraphs, cells, text boxes,
    /// line breaks).
    pub breaks: &'static [&'static str],
    /// Elements that stand for a space (tabs).
    pub spaces: &'static [&'static str],
    /// Elements whose content is not text (HTML `script`, `style`).
    pub skipped: &'static [&'static str],
    /// Names compare without case (HTML).
    pub ignore_case: bool,
}

pub const HTML: Vocabulary = Vocabulary {
    breaks: &[
        "p",
        "div",
        "br",
        "hr",
        "td",
        "th",
        "tr",
        "li",
        "ul",
        "ol",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "title",
        "body",
        "blockquote",
        "pre",
        "section",
        "article",
        "header",
        "footer",
        "center",
        "dd",
        "dt",
        "caption",
    ],
    spaces: &[],
    skipped: &["script", "style", "head"],
    ignore_case: true,
};

/// Bytes of markup between two looks at the clock.
const MARKUP_PER_CLOCK_CHECK: usize = 256 * 1024;

/// Feeds the text of `markup` to `finder`, a line per block.
pub fn feed(
    markup: &[u8],
    vocabulary: &Vocabulary,
    finder: &mut StampFinder,
    budget: &Budget,
) -> Result<(), String> {
    let mut pos = 0;
    let mut next_check = MARKUP_PER_CLOCK_CHECK;
    while pos < markup.len() {
        if pos >= next_check {
            next_check = pos + MARKUP_PER_CLOCK_CHECK;
            budget.check_limits()?;
        }
        if finder.found().is_some() {
            return Ok(());
        }
        let lt = memchr::memchr(b'<', &markup[pos..]).map_or(markup.len(), |i| pos + i);
        if lt > pos {
            push_text(&markup[pos..lt], finder);
        }
        if lt >= markup.len() {
            break;
        }
        let rest = &markup[lt..];
        pos = if rest.starts_with(b"<!--") {
            skip_past(markup, lt + 4, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            let end = memchr::memmem::find(&markup[lt + 9..], b"]]>")
                .map_or(markup.len(), |i| lt + 9 + i);
            finder.push_text(&String::from_utf8_lossy(&markup[lt + 9..end]));
            (end + 3).min(markup.len())
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            skip_past(markup, lt + 2, b">")
        } else {
            let end = memchr::memchr(b'>', rest).map_or(markup.len(), |i| lt + i + 1);
            let tag = &markup[lt + 1..end.saturating_sub(1).max(lt + 1)];
            let closing = tag.starts_with(b"/");
            let name_bytes = tag.strip_prefix(b"/").unwrap_or(tag);
            let name_len = name_bytes
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
                .unwrap_or(name_bytes.len());
            let name = &name_bytes[..name_len];
            let is = |list: &[&str]| {
                list.iter().any(|n| {
                    if vocabulary.ignore_case {
                        n.as_bytes().eq_ignore_ascii_case(name)
                    } else {
                        n.as_bytes() == name
                    }
                })
            };
            if is(vocabulary.breaks) {
                finder.end_line();
                end
            } else if is(vocabulary.spaces) {
                finder.push_char(' ');
                end
            } else if !closing && !tag.ends_with(b"/") && is(vocabulary.skipped) {
                skip_element(markup, end, name)
            } else {
                end
            }
        };
    }
    finder.end_line();
    Ok(())
}

/// Where the text after the next `end` at or after `from` starts.
fn skip_past(markup: &[u8], from: usize, end: &[u8]) -> usize {
    memchr::memmem::find(&markup[from.min(markup.len())..], end)
        .map_or(markup.len(), |i| from + i + end.len())
}

/// Past the end tag of the element `name` whose content starts at `from`
/// (names compared without case: only HTML skips elements).
fn skip_element(markup: &[u8], from: usize, name: &[u8]) -> usize {
    let mut at = from;
    while let Some(i) = memchr::memmem::find(&markup[at.min(markup.len())..], b"</") {
        let start = at + i + 2;
        let candidate = &markup[start..(start + name.len()).min(markup.len())];
        if candidate.eq_ignore_ascii_case(name) {
            return skip_past(markup, start, b">");
        }
        at = start;
    }
    markup.len()
}

/// Character data, its entities decoded; a line break in it is a space (markup
/// lines come from elements, not from how the source was wrapped).
fn push_text(raw: &[u8], finder: &mut StampFinder) {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    while let Some(amp) = rest.find('&') {
        push_flowed(&rest[..amp], finder);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        match end.and_then(|e| entity(&after[..e]).map(|c| (e, c))) {
            Some((e, c)) => {
                finder.push_char(c);
                rest = &after[e + 1..];
            }
            None => {
                finder.push_char('&');
                rest = after;
            }
        }
    }
    push_flowed(rest, finder);
}

fn push_flowed(text: &str, finder: &mut StampFinder) {
    if text.contains(['\n', '\r']) {
        finder.push_str(&text.replace(['\n', '\r'], " "));
    } else {
        finder.push_str(text);
    }
}

/// The character an entity (without `&` and `;`) stands for.
fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    fn html(text: &str) -> Option<&'static str> {
        let b = Budget::new(&LimitsSection::default());
        let mut f = StampFinder::default();
        feed(text.as_bytes(), &HTML, &mut f, &b).unwrap();
        f.finish()
    }

    #[test]
    fn html_blocks_are_lines() {
        assert_eq!(
            html("<p>Kế hoạch</p><p><b>TỐI</b> M&#7852;T</p>"),
            Some("TỐI MẬT")
        );
        assert_eq!(html("<div>x<br>\n  MẬT\n<br/>y</div>"), Some("MẬT"));
        assert_eq!(html("<td>&nbsp;MẬT&nbsp;</td>"), Some("MẬT"));
        assert_eq!(html("<p>Giữ <b>bí</b> MẬT</p>"), None);
        assert_eq!(html("<p>Đổi mật khẩu</p><p>Mật độ</p>"), None);
        assert_eq!(
            html("<script>\nMẬT\n</script><style>MẬT</style><p>x</p>"),
            None
        );
        assert_eq!(html("<!-- MẬT --><p>y</p>"), None);
    }
}
