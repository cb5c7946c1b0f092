//! A TCP relay in front of a dependency (PostgreSQL or Redis) that a test can cut, hang and
//! restore, to make the dependency unreachable without touching the shared service.
//!
//! It binds port 0 and keeps its listener for its whole life, so no other test can take the
//! port between "pick a port" and "listen on it".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// New connections are forwarded.
    Open,
    /// New connections are closed at once (the dependency is down or restarting).
    Closed,
    /// New connections are accepted and never answered (a hanging dependency).
    Hanging,
}

/// What a switch does to connections that are already there. Tests differ on purpose: a
/// dependency that hangs after a restart cuts what was open, a network black hole leaves
/// open connections silently dead, and a restarted dependency closes what it had held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Keep,
    End,
    /// Forwarding stops but the connection stays open and unanswered.
    Silence,
}

#[derive(Debug, Clone, Copy)]
struct Switch {
    mode: Mode,
    forwarding: Existing,
    held: Existing,
}

pub struct Relay {
    pub addr: SocketAddr,
    pub port: u16,
    switch: watch::Sender<Switch>,
    forwarding: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` (`host:port`), open.
    pub async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (switch, _) = watch::channel(Switch {
            mode: Mode::Open,
            forwarding: Existing::Keep,
            held: Existing::Keep,
        });
        let forwarding = Arc::new(AtomicUsize::new(0));
        let target = target.to_string();
        let task = {
            let switch = switch.clone();
            let forwarding = forwarding.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(serve(
                        inbound,
                        target.clone(),
                        switch.subscribe(),
                        forwarding.clone(),
                    ));
                }
            })
        };
        Relay {
            addr,
            port: addr.port(),
            switch,
            forwarding,
            task,
        }
    }

    fn set(&self, mode: Mode, forwarding: Existing, held: Existing) {
        self.switch.send_replace(Switch {
            mode,
            forwarding,
            held,
        });
    }

    /// The dependency becomes unreachable: connections are refused/closed.
    pub fn close(&self) {
        self.set(Mode::Closed, Existing::End, Existing::End);
    }

    /// The dependency hangs: connections open but nothing ever answers; existing ones are
    /// cut.
    pub fn hang(&self) {
        self.set(Mode::Hanging, Existing::End, Existing::End);
    }

    /// A network black hole: nothing answers any more, and existing connections stay open
    /// without an answer instead of being cut.
    pub fn blackhole(&self) {
        self.set(Mode::Hanging, Existing::Silence, Existing::Keep);
    }

    /// Traffic flows again for new connections; connections held while hanging stay held,
    /// so the client has to give up on them by itself.
    pub fn open(&self) {
        self.set(Mode::Open, Existing::Keep, Existing::Keep);
    }

    /// Traffic flows again as after a restart of the dependency: every connection it had
    /// (held or forwarded) is closed, new ones are forwarded.
    pub fn restart(&self) {
        self.set(Mode::Open, Existing::End, Existing::End);
    }

    /// Connections currently forwarded to the dependency.
    pub fn forwarding(&self) -> usize {
        self.forwarding.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decrements the forwarding count however the forwarding ends.
struct Forwarding(Arc<AtomicUsize>);

impl Forwarding {
    fn start(count: &Arc<AtomicUsize>) -> Forwarding {
        count.fetch_add(1, Ordering::SeqCst);
        Forwarding(count.clone())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    mut inbound: TcpStream,
    target: String,
    mut switch: watch::Receiver<Switch>,
    count: Arc<AtomicUsize>,
) {
    let mode = switch.borrow_and_update().mode;
    match mode {
        Mode::Closed => return,
        Mode::Hanging => {}
        Mode::Open => {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _forwarding = Forwarding::start(&count);
            let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
            tokio::pin!(copy);
            loop {
                tokio::select! {
                    _ = &mut copy => return,
                    changed = switch.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let forwarding = switch.borrow_and_update().forwarding;
                        match forwarding {
                            Existing::Keep => continue,
                            Existing::End => return,
                            Existing::Silence => break,
                        }
                    }
                }
            }
        }
    }
    hold(inbound, switch).await;
}

/// Swallows whatever the client sends and never answers, until the client gives up or a
/// switch ends held connections.
async fn hold(mut inbound: TcpStream, mut switch: watch::Receiver<Switch>) {
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = inbound.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            changed = switch.changed() => {
                if changed.is_err() || switch.borrow_and_update().held == Existing::End {
                    return;
                }
            }
        }
    }
}
