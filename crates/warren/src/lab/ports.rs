//! Free loopback ports for the lab's private servers (broker, Prometheus, web, autoscaler).
//!
//! Binding port 0 hands out a port from the kernel's ephemeral range, the same range every
//! outgoing connection on the machine draws its local port from. Between finding such a port and
//! the server binding it, any client may take it (a RabbitMQ node then fails with `eaddrinuse`).
//! So ports are drawn at random from below the ephemeral range, where only listeners live, and
//! each is checked by binding it.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// The lowest port handed out: above the registered services most machines run.
const LOWEST: u16 = 10_000;

/// `n` distinct ports on 127.0.0.1 that were free a moment ago, none in the ephemeral range.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let (low, high) = candidate_range();
    // Held together, so no port repeats; released on return.
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        let port = if tries > 1000 {
            // The range is crowded: fall back on the kernel's choice.
            0
        } else {
            low + (random() % u64::from(high - low)) as u16
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        } else if port == 0 {
            return Err(std::io::Error::other("no free loopback port"));
        }
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// One port, as [`free_ports`].
pub fn free_port() -> std::io::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `[LOWEST, start of the ephemeral range)`, or `[LOWEST, 32768)` when the range is unreadable.
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST + 1000 {
        (LOWEST, ephemeral_low)
    } else {
        // An unusually wide ephemeral range: use the ports above it, or the top of the space.
        (50_000, u16::MAX)
    }
}

/// A random number from the standard library's per-process hasher keys.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports = free_ports(20).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 20, "{ports:?}");
        let (low, high) = candidate_range();
        for port in ports {
            assert!((low..high).contains(&port), "{port} outside {low}..{high}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
