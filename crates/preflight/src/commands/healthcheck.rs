//! `preflight healthcheck`: a dependency-free probe for container images without curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Host to probe.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to probe (defaults to the server's API_PORT).
    #[arg(long, env = "API_PORT", default_value_t = 8000)]
    port: u16,
    /// Path to request.
    #[arg(long, default_value = "/ready")]
    path: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {}", args.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: preflight-healthcheck\r\nConnection: close\r\n\r\n",
        args.path, args.host
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        println!("ok: {}{} answered 200", addr, args.path);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("not ready: {}{} answered {:?}", addr, args.path, status);
        Ok(ExitCode::FAILURE)
    }
}
