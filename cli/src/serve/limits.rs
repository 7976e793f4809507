//! Connections held per peer: one client must not take the verification
//! listener's whole `max_connections` budget (the admin listener has a
//! budget of its own, `admin.max_connections`).
//!
//! A peer is an IPv4 address, or an IPv6 /64 (one host is usually given a
//! whole /64, so counting single IPv6 addresses would bound nothing). Unix
//! socket connections are not counted here: who may connect is the socket
//! file's permissions, and they count against `max_connections` only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Connections open per peer, and the cap.
#[derive(Debug)]
pub struct Peers {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct PeerPermit {
    peers: Arc<Peers>,
    peer: IpAddr,
}

impl Peers {
    /// At most `cap` connections per peer.
    pub fn new(cap: usize) -> Arc<Peers> {
        Arc::new(Peers {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `peer`, or `None` when that peer
    /// holds `cap` already (or its address cannot be read: the connection
    /// is gone).
    pub fn admit(self: &Arc<Peers>, peer: std::io::Result<SocketAddr>) -> Option<PeerPermit> {
        let peer = bucket(peer.ok()?.ip());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(peer).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerPermit {
            peers: self.clone(),
            peer,
        })
    }

    /// Connections `peer` holds now (tests).
    #[cfg(test)]
    fn held(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap();
        open.get(&bucket(peer)).copied().unwrap_or(0)
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// The bucket an address counts in: IPv4 (an IPv4-mapped IPv6 address is
/// its IPv4 address), or the IPv6 /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str) -> std::io::Result<SocketAddr> {
        Ok(SocketAddr::new(ip.parse().unwrap(), 1234))
    }

    #[test]
    fn a_peer_holds_at_most_the_cap_and_gets_places_back() {
        let peers = Peers::new(2);
        let a = peers.admit(at("10.0.0.1")).unwrap();
        let _b = peers.admit(at("10.0.0.1")).unwrap();
        assert!(peers.admit(at("10.0.0.1")).is_none());
        assert!(
            peers.admit(at("::ffff:10.0.0.1")).is_none(),
            "IPv4-mapped is the same peer"
        );
        let _c = peers.admit(at("10.0.0.2")).expect("another peer has its own places");
        drop(a);
        assert!(peers.admit(at("10.0.0.1")).is_some());
        assert_eq!(peers.held("10.0.0.1".parse().unwrap()), 1);
        assert!(peers.admit(Err(std::io::Error::other("gone"))).is_none());
    }

    #[test]
    fn an_ipv6_peer_is_its_slash_64() {
        let peers = Peers::new(1);
        let _a = peers.admit(at("2001:db8:1:2::1")).unwrap();
        assert!(peers.admit(at("2001:db8:1:2:ffff::9")).is_none());
        assert!(peers.admit(at("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn entries_go_when_their_connections_close() {
        let peers = Peers::new(4);
        let permits: Vec<_> = (0..4).map(|_| peers.admit(at("10.0.0.1")).unwrap()).collect();
        drop(permits);
        assert!(peers.open.lock().unwrap().is_empty());
    }
}
