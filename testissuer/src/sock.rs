//! Closing tiny_http's sockets from the outside (Unix only).
//!
//! tiny_http offers no way to close a connection without answering, nor to close
//! keep-alive connections when the server stops. Both are done by finding the socket
//! descriptor by its addresses and calling `shutdown(2)` on it; tiny_http keeps
//! ownership of the descriptor and closes it later.

use std::net::SocketAddr;

/// Closes the TCP connection between the server at `local` and the client at `peer`
/// without writing anything, by shutting the socket down in both directions.
/// tiny_http keeps ownership of the descriptor and closes it later.
/// Returns whether a matching socket was found.
#[cfg(unix)]
pub(crate) fn shutdown_connection(local: SocketAddr, peer: SocketAddr) -> bool {
    shutdown_where(|fd| {
        sock_addr(fd, libc::getpeername) == Some(peer) && sock_addr(fd, libc::getsockname) == Some(local)
    }) > 0
}

/// Shuts down every connected socket of this process whose local address is `local`,
/// i.e. every connection the server at `local` accepted, including idle keep-alive ones.
/// Returns how many were shut down.
#[cfg(unix)]
pub(crate) fn shutdown_server_connections(local: SocketAddr) -> usize {
    shutdown_where(|fd| sock_addr(fd, libc::getsockname) == Some(local) && sock_addr(fd, libc::getpeername).is_some())
}

#[cfg(unix)]
fn shutdown_where(mut pred: impl FnMut(libc::c_int) -> bool) -> usize {
    let mut n = 0;
    for fd in candidate_fds() {
        if pred(fd) {
            // SAFETY: shutdown(2) on a descriptor number has no memory-safety requirements;
            // the descriptor is a TCP socket matching the addresses checked by `pred`.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            n += 1;
        }
    }
    n
}

/// Non-Unix fallback: the connection cannot be closed from here.
#[cfg(not(unix))]
pub(crate) fn shutdown_connection(_local: SocketAddr, _peer: SocketAddr) -> bool {
    false
}

/// Non-Unix fallback: connections are left to the client's timeouts.
#[cfg(not(unix))]
pub(crate) fn shutdown_server_connections(_local: SocketAddr) -> usize {
    0
}

#[cfg(unix)]
fn candidate_fds() -> Vec<libc::c_int> {
    for dir in ["/proc/self/fd", "/dev/fd"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let fds: Vec<libc::c_int> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            if !fds.is_empty() {
                return fds;
            }
        }
    }
    (0..4096).collect()
}

#[cfg(unix)]
type SockNameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// The IPv4 address that `f` (getsockname/getpeername) reports for `fd`, if any.
#[cfg(unix)]
fn sock_addr(fd: libc::c_int, f: SockNameFn) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len describe a writable buffer large enough for any socket address.
    let rc = unsafe { f(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc != 0 || libc::c_int::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: ss_family is AF_INET, so the storage holds a sockaddr_in.
    let sin: &libc::sockaddr_in = unsafe { &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
}
