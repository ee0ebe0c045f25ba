//! The one HTTP request the testnet makes itself: a GET on a node's local API with the
//! bearer token of its home, over a plain TCP stream (no client library to build).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result, io_err};

/// `GET path` on the API at `addr` with the token in `token_path`, within 10 s; the body
/// of a 200 answer.
pub(crate) fn get_with_token(
    addr: SocketAddr,
    token_path: &Path,
    path: &str,
    what: String,
) -> Result<String> {
    let token = fs::read_to_string(token_path)
        .map_err(io_err(format!("cannot read {}", token_path.display())))?;
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_err(&what))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_err(&what))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .map_err(io_err(&what))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(io_err(&what))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(Error::Invalid {
            what,
            reason: format!("answered {status_line:?}"),
        });
    }
    Ok(body.to_string())
}
