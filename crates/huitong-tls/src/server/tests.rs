use super::*;

fn limits(pending: usize, connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        handshake_timeout: Duration::from_secs(2),
        pending_handshakes_per_address: pending,
        connections_per_address: connections,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn one_address_over_its_pending_limit_is_refused_and_others_are_not() {
    let table = Arc::default();
    let l = limits(2, 10);
    let a = ip("10.0.0.1");
    let mut held: Vec<Slot> = (0..2)
        .map(|_| Slot::admit(&table, &l, a).unwrap())
        .collect();
    assert!(matches!(
        Slot::admit(&table, &l, a),
        Err(OverLimit::PendingPerAddress)
    ));
    // Another address is not affected by the first one's sockets.
    let _b = Slot::admit(&table, &l, ip("10.0.0.2")).unwrap();
    // A finished handshake frees its pending place for the next one.
    held[0].established();
    let _c = Slot::admit(&table, &l, a).unwrap();
    assert_eq!(lock(&table).by_address[&a].open, 1);
    assert_eq!(lock(&table).by_address[&a].pending, 2);
}

#[test]
fn open_connections_count_until_they_close() {
    let table = Arc::default();
    let l = limits(4, 3);
    let a = ip("::1");
    let mut open: Vec<Slot> = (0..3)
        .map(|_| Slot::admit(&table, &l, a).unwrap())
        .collect();
    for s in &mut open {
        s.established();
    }
    assert!(matches!(
        Slot::admit(&table, &l, a),
        Err(OverLimit::ConnectionsPerAddress)
    ));
    open.pop();
    let last = Slot::admit(&table, &l, a).unwrap();
    drop(last);
    drop(open);
    // Nothing is left behind for an address once all its connections are gone.
    assert!(lock(&table).by_address.is_empty());
    assert_eq!(lock(&table).pending, 0);
}

#[test]
fn the_total_of_pending_handshakes_is_bounded() {
    let table = Arc::default();
    let l = limits(usize::MAX, usize::MAX);
    let held: Vec<Slot> = (0..MAX_HANDSHAKES)
        .map(|i| {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            Slot::admit(&table, &l, ip).unwrap()
        })
        .collect();
    assert!(matches!(
        Slot::admit(&table, &l, ip("10.9.9.9")),
        Err(OverLimit::PendingTotal)
    ));
    drop(held);
    assert!(Slot::admit(&table, &l, ip("10.9.9.9")).is_ok());
}

#[test]
fn limits_that_refuse_everything_are_refused() {
    assert!(ConnectionLimits::default().check().is_ok());
    assert!(limits(0, 1).check().is_err());
    assert!(limits(1, 0).check().is_err());
    let mut l = limits(1, 1);
    l.handshake_timeout = Duration::ZERO;
    assert!(l.check().is_err());
}
