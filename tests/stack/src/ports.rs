//! Free TCP ports on 127.0.0.1, picked at start (the OS chooses; all ports of one
//! call are distinct because their listeners are held open together).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use crate::StackError;

/// `n` distinct free ports on 127.0.0.1. They are free when returned; another
/// process could take one before it is used, which on a test machine is rare.
pub fn free_ports(n: usize) -> Result<Vec<u16>, StackError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StackError::io("binding 127.0.0.1:0 to find a free port", e))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| StackError::io("reading a listener's port", e))
        })
        .collect()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
