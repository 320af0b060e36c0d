//! A TCP proxy on 127.0.0.1 that a test can cut and restore, to put a
//! network partition between servers and their database without stopping
//! the database other tests share.
//!
//! While cut, every open connection is closed and new ones are closed as
//! soon as they are accepted (the peer sees a reset or EOF at once, as when
//! a database host restarts); after `restore` connections pass again.
//! Plain threads, so it works under any test runtime and outlives none:
//! dropping the proxy cuts everything and stops accepting.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    cut: AtomicBool,
    closed: AtomicBool,
    /// Both ends of every connection passed so far (closed ones included;
    /// shutting a closed socket down again is harmless).
    conns: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn cut_all(&self) {
        for s in self.conns.lock().expect("conns").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    /// Starts forwarding from a new port on 127.0.0.1 to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut conns = s.conns.lock().expect("conns");
                    conns.extend(
                        [client.try_clone(), server.try_clone()]
                            .into_iter()
                            .flatten(),
                    );
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Self { addr, shared }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (`scheme://[user@]host:port/...`) pointed at the proxy.
    pub fn url_for(&self, url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let host_start = rest[..auth_end].rfind('@').map_or(0, |i| i + 1);
        format!(
            "{}{}{}{}",
            &url[..scheme_end],
            &rest[..host_start],
            self.addr,
            &rest[auth_end..]
        )
    }

    /// Closes every connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so it sees `closed`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copies `from` → `to` on a thread until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    }

    #[test]
    fn passes_cuts_and_restores() {
        let p = Proxy::start(echo());
        assert_eq!(round_trip(p.addr()).unwrap(), b"ping");

        let mut open = TcpStream::connect(p.addr()).unwrap();
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        open.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).unwrap();
        p.cut();
        // The open connection ends, and a new one gets nowhere.
        assert!(matches!(open.read(&mut one), Ok(0) | Err(_)));
        assert!(round_trip(p.addr()).is_err());

        p.restore();
        assert_eq!(round_trip(p.addr()).unwrap(), b"ping");
    }

    #[test]
    fn urls_are_pointed_at_the_proxy() {
        let p = Proxy::start(echo());
        let a = p.addr();
        assert_eq!(
            p.url_for("postgres://postgres@127.0.0.1:5432/db1"),
            format!("postgres://postgres@{a}/db1")
        );
        assert_eq!(
            p.url_for("postgres://127.0.0.1:5432/db1?sslmode=disable"),
            format!("postgres://{a}/db1?sslmode=disable")
        );
    }
}
