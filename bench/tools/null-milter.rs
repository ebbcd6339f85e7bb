//! The milter protocol layer of congvu-milter and nothing else: negotiates as the
//! daemon does, stores every message's headers and body as the daemon does, and
//! accepts every message without looking at it. The benchmarks run Postfix with
//! this milter to measure what feeding any milter costs Postfix on the same
//! machine (the floor under congvu-milter's own figures); it is not a product.
//!
//!     cargo run --release --example null-milter -- 127.0.0.1:8899

use std::sync::Arc;

use congvu_milter::message::Message;
use congvu_milter::milter::session::{SessionConfig, run_session};
use congvu_milter::milter::{BoxFuture, Filter};
use congvu_milter::verdict::Verdict;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct AcceptEverything;

impl Filter for AcceptEverything {
    fn end_of_message(&self, _msg: Message) -> BoxFuture<'static, Verdict> {
        Box::pin(async { Verdict::accept() })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8899".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("null-milter listening on {addr}");
    let filter = Arc::new(AcceptEverything);
    let stop = CancellationToken::new();
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        next_id += 1;
        let (filter, stop, id) = (filter.clone(), stop.clone(), next_id);
        tokio::spawn(async move {
            run_session(
                stream,
                filter,
                SessionConfig::default(),
                id,
                peer.to_string(),
                stop,
            )
            .await;
        });
    }
}
