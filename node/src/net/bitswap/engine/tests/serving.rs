use super::*;

#[test]
fn a_block_its_asker_waits_on_gets_a_second_copy_before_third_copies_of_others() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (first, waiting, ahead) = (PeerId::random(), PeerId::random(), PeerId::random());
    let want = |i: u32, priority| Want {
        cid: *block(&i.to_le_bytes()).cid(),
        priority,
        kind: WantType::Block,
        send_dont_have: false,
    };
    let now = Instant::now();
    for p in [first, waiting, ahead] {
        e.connected(p, &mut out);
    }
    e.received(first, Message { wants: vec![want(0, PRIORITY_READER)], ..Message::default() }, now, &mut out);
    let job = e.next_serve_job(&|_| false, 1, now).unwrap();
    e.served(job.peer, vec![], vec![], 1, 1);
    // Block 0 went out once. A player waiting on it and a read-ahead of a block never sent
    // tie, and the waiting player goes first; a read-ahead of block 0 would not.
    e.received(ahead, Message { wants: vec![want(1, PRIORITY_AHEAD)], ..Message::default() }, now, &mut out);
    e.received(waiting, Message { wants: vec![want(0, PRIORITY_READER)], ..Message::default() }, now, &mut out);
    assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, waiting);
    assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, ahead);
}

#[test]
fn a_busy_peer_waits_for_its_turn_while_others_are_served() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (slow, other) = (PeerId::random(), PeerId::random());
    e.connected(slow, &mut out);
    e.connected(other, &mut out);
    let want = |i: u32| Want {
        cid: *block(&i.to_le_bytes()).cid(),
        priority: 1,
        kind: WantType::Block,
        send_dont_have: false,
    };
    e.received(slow, Message { wants: vec![want(1)], ..Message::default() }, Instant::now(), &mut out);
    e.received(other, Message { wants: vec![want(2)], ..Message::default() }, Instant::now(), &mut out);
    let busy = |p: &PeerId| *p == slow;
    assert_eq!(e.next_serve_job(&busy, usize::MAX, Instant::now()).unwrap().peer, other);
    assert!(e.next_serve_job(&busy, usize::MAX, Instant::now()).is_none(), "the busy peer is not served");
    // Once its queue drains, its wants are still there.
    let job = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
    assert_eq!((job.peer, job.wants), (slow, vec![want(1)]));
}

#[test]
fn serving_takes_turns_between_peers() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (greedy, modest) = (PeerId::random(), PeerId::random());
    e.connected(greedy, &mut out);
    e.connected(modest, &mut out);
    let want = |i: u32| Want {
        cid: *block(&i.to_le_bytes()).cid(),
        priority: 1,
        kind: WantType::Block,
        send_dont_have: false,
    };
    e.received(greedy, Message { wants: (0..100).map(want).collect(), ..Message::default() }, Instant::now(), &mut out);
    e.received(modest, Message { wants: vec![want(1000)], ..Message::default() }, Instant::now(), &mut out);
    let first = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
    assert_eq!((first.peer, first.wants.len()), (greedy, SERVE_BATCH));
    e.served(greedy, vec![], vec![], 16, 16);
    let second = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
    assert_eq!((second.peer, second.wants.len()), (modest, 1), "the modest peer is next, not starved");
    e.served(modest, vec![], vec![], 1, 1);
    assert_eq!(e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap().peer, greedy);

    // A cancel removes a want that is still queued.
    let mut fresh = Engine::default();
    fresh.connected(modest, &mut out);
    fresh.received(modest, Message { wants: vec![want(1), want(2)], ..Message::default() }, Instant::now(), &mut out);
    fresh.received(modest, Message { cancels: vec![want(1).cid], ..Message::default() }, Instant::now(), &mut out);
    assert_eq!(fresh.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap().wants, vec![want(2)]);
}

#[test]
fn a_seed_sends_every_block_once_before_any_twice_and_nobody_starves() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    let want = |i: u32, kind| Want { cid: *block(&i.to_le_bytes()).cid(), priority: 1, kind, send_dont_have: false };
    let t0 = Instant::now();
    for (n, p) in peers.iter().enumerate() {
        e.connected(*p, &mut out);
        // Everyone asks for the same three blocks, in the same order.
        let wants = (0..3).map(|i| want(i, WantType::Block)).collect();
        e.received(*p, Message { wants, ..Message::default() }, t0 + Duration::from_secs(n as u64), &mut out);
    }
    let now = t0 + Duration::from_secs(3);
    let mut first_copies = Vec::new();
    for _ in 0..3 {
        let job = e.next_serve_job(&|_| false, 1, now).unwrap();
        assert_eq!(job.wants.len(), 1, "one block of room: one block per turn");
        first_copies.push(job.wants[0].cid);
        e.served(job.peer, vec![], vec![], 1, 1);
    }
    first_copies.sort();
    first_copies.dedup();
    assert_eq!(first_copies.len(), 3, "three turns sent three different blocks");

    // With no room for blocks, only presence questions are answered.
    let late = PeerId::random();
    e.connected(late, &mut out);
    e.received(late, Message { wants: vec![want(7, WantType::Have)], ..Message::default() }, now, &mut out);
    let job = e.next_serve_job(&|_| false, 0, now).unwrap();
    assert_eq!((job.peer, job.wants), (late, vec![want(7, WantType::Have)]));
    assert!(e.next_serve_job(&|_| false, 0, now).is_none(), "block wants wait for room");

    // A peer left waiting past SERVE_STARVE goes first, however often its blocks were sent.
    let fresh = PeerId::random();
    e.connected(fresh, &mut out);
    e.received(fresh, Message { wants: vec![want(9, WantType::Block)], ..Message::default() }, now, &mut out);
    assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, fresh, "a block never sent goes first");
    let later = now + SERVE_STARVE;
    let newcomer = PeerId::random();
    e.connected(newcomer, &mut out);
    e.received(newcomer, Message { wants: vec![want(10, WantType::Block)], ..Message::default() }, later, &mut out);
    let job = e.next_serve_job(&|_| false, 1, later).unwrap();
    assert_eq!(job.peer, peers[0], "the longest waiting peer, not the newcomer's unsent block");
}

#[test]
fn a_ledger_is_capped() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let p = PeerId::random();
    e.connected(p, &mut out);
    let wants = (0..(MAX_LEDGER as u32 + 500))
        .map(|i| Want { cid: *block(&i.to_le_bytes()).cid(), priority: 0, kind: WantType::Have, send_dont_have: true })
        .collect();
    e.received(p, Message { wants, ..Message::default() }, Instant::now(), &mut out);
    let mut total = 0;
    while let Some(job) = e.next_serve_job(&|_| false, usize::MAX, Instant::now()) {
        total += job.wants.len();
        e.served(p, vec![], vec![], 0, 0);
    }
    assert_eq!(total, MAX_LEDGER);
    // Flooding on: each overflowing message costs score, until the peer is banned.
    let now = Instant::now();
    assert!(!e.is_banned(&p, now));
    let flood = |i: u32| Message {
        wants: (0..MAX_LEDGER as u32 + 10)
            .map(|j| Want {
                cid: *block(&[i.to_le_bytes(), j.to_le_bytes()].concat()).cid(),
                priority: 0,
                kind: WantType::Block,
                send_dont_have: false,
            })
            .collect(),
        ..Message::default()
    };
    let mut sent = 0;
    while !e.is_banned(&p, now) {
        e.received(p, flood(sent), now, &mut out);
        sent += 1;
        assert!(sent < 100, "never banned");
    }
    assert_eq!(f64::from(sent), (BAN_SCORE / PENALTY_FLOOD).ceil());
}
