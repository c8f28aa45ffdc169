//! The remote tier as configured: URL, mode, timeout, write namespace. (Talking to it is the
//! job of the `remote` module, above this one; this is only the setting.)

use crate::cli::RemoteMode as Mode;
use std::time::Duration;

/// How long one remote operation may take, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A configured remote.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub mode: Mode,
    pub timeout: Duration,
    pub namespace: Option<String>,
}

impl Remote {
    /// The URL with any password replaced by `***`, for every message that shows it.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// Replace the password (or a lone user token) in a URL's userinfo with `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((u, _)) => format!("{u}:***"),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_owned(),
    }
}
