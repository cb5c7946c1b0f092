//! A TCP relay in front of a dependency that a test can cut, hang and restore, to make
//! PostgreSQL or Redis unreachable without touching the shared service.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const OPEN: u8 = 0;
/// Refuse: accepted connections are closed at once, existing ones are cut.
const CLOSED: u8 = 1;
/// Hang: connections are accepted and never answered, existing ones are cut.
const HANGING: u8 = 2;

pub struct Relay {
    pub port: u16,
    mode: Arc<AtomicU8>,
    cut: watch::Sender<u64>,
}

impl Relay {
    pub async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(OPEN));
        let (cut, _) = watch::channel(0u64);
        let target = target.to_string();
        let relay = Relay {
            port,
            mode: mode.clone(),
            cut: cut.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut cut_rx = cut.subscribe();
                match mode.load(Ordering::SeqCst) {
                    CLOSED => drop(inbound),
                    HANGING => {
                        tokio::spawn(async move {
                            let _ = cut_rx.changed().await;
                            drop(inbound);
                        });
                    }
                    _ => {
                        let target = target.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = cut_rx.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        relay
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// The dependency becomes unreachable: connections are refused/closed.
    pub fn close(&self) {
        self.set(CLOSED);
    }

    /// The dependency hangs: connections open but nothing ever answers.
    pub fn hang(&self) {
        self.set(HANGING);
    }

    /// Traffic flows again.
    pub fn open(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }
}
