//! TEMPORARY stub until the protocol branch lands.
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Filter;

#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    pub max_frame_size: usize,
    pub idle_timeout: Duration,
    pub progress_interval: Duration,
}

pub async fn run_session<S: AsyncRead + AsyncWrite + Unpin, F: Filter>(
    _stream: S,
    _filter: Arc<F>,
    _config: SessionConfig,
    _conn_id: u64,
    _peer: String,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    Ok(())
}
