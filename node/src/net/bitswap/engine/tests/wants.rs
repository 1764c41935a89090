use super::*;

#[test]
fn a_fetch_asks_everyone_then_the_peer_that_has_it() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (p1, p2) = (PeerId::random(), PeerId::random());
    e.connected(p1, &mut out);
    e.connected(p2, &mut out);
    let b = block(b"wanted");
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
    let sent = out.take();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, m)| m.wants[0].kind == WantType::Have && m.wants[0].send_dont_have));

    // p1 stays silent; once HAVE_WAIT has passed, the HAVE that came is enough.
    let have = Message { haves: vec![*b.cid()], ..Message::default() };
    assert!(e.received(p2, have, Instant::now() + HAVE_WAIT, &mut out).is_empty());
    let sent = out.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, p2);
    assert_eq!(sent[0].1.wants[0].kind, WantType::Block);

    let got = e.received(p2, Message { blocks: vec![b.clone()], ..Message::default() }, Instant::now(), &mut out);
    assert_eq!(got, vec![b.clone()]);
    assert!(rx.try_recv().is_err(), "handed out before it was stored");
    e.stored(&got, Ok(()), &mut out);
    assert_eq!(rx.try_recv().unwrap().unwrap(), b.data());
    let cancels: Vec<PeerId> =
        out.take().into_iter().filter(|(_, m)| m.cancels == vec![*b.cid()]).map(|(p, _)| p).collect();
    assert_eq!(cancels.len(), 2, "both peers were told, both get a cancel");
    assert_eq!(e.wanted(), 0);
}

#[test]
fn the_peers_answer_is_known_once_one_has_the_block_or_all_said_no() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (blocks, now) = ([block(b"one"), block(b"two"), block(b"three")], Instant::now());
    let _none = want_all(&mut e, &blocks[2..], PRIORITY_READER, now, &mut out);
    assert_eq!(e.peers_answer(blocks[2].cid()), Some(false), "no peer to ask: nobody has it");
    let (p1, p2) = (PeerId::random(), PeerId::random());
    e.connected(p1, &mut out);
    e.connected(p2, &mut out);
    let _rxs = want_all(&mut e, &blocks[..2], PRIORITY_READER, now, &mut out);
    let answer = |have: bool, cid: &Cid| {
        if have {
            Message { haves: vec![*cid], ..Message::default() }
        } else {
            Message { dont_haves: vec![*cid], ..Message::default() }
        }
    };
    for b in &blocks[..2] {
        assert_eq!(e.peers_answer(b.cid()), None, "answers are due");
        e.received(p1, answer(false, b.cid()), now, &mut out);
        assert_eq!(e.peers_answer(b.cid()), None, "one peer is still to answer");
    }
    e.received(p2, answer(true, blocks[0].cid()), now, &mut out);
    e.received(p2, answer(false, blocks[1].cid()), now, &mut out);
    assert_eq!(e.peers_answer(blocks[0].cid()), Some(true));
    assert_eq!(e.peers_answer(blocks[1].cid()), Some(false), "every peer said DONT_HAVE");
    // A holder that went away still counts: the block is not rare, only slow to come.
    e.disconnected(p2, &mut out);
    assert_eq!(e.peers_answer(blocks[0].cid()), Some(true));
}

#[test]
fn a_peer_without_bitswap_is_not_waited_for() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (p1, mute) = (PeerId::random(), PeerId::random());
    e.connected(p1, &mut out);
    e.connected(mute, &mut out);
    let b = block(b"answer");
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    e.fetch(*b.cid(), 1, tx, far(), start, &mut out);
    assert!(e.needs_providers(b.cid()), "nobody has said HAVE yet");
    e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
    out.take();
    assert!(!e.needs_providers(b.cid()), "p1 has it");
    // The other peer turns out not to speak Bitswap: p1 is asked at once, not after the
    // HAVE wait.
    e.disconnected(mute, &mut out);
    let sent = out.take();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1.wants[0].kind), (p1, WantType::Block));
}

#[test]
fn dont_have_moves_the_want_to_the_next_peer() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (p1, p2) = (PeerId::random(), PeerId::random());
    e.connected(p1, &mut out);
    e.connected(p2, &mut out);
    let b = block(b"x");
    let (tx, _rx) = tokio::sync::oneshot::channel();
    e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
    e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
    e.received(p2, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
    out.take();
    e.received(p1, Message { dont_haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
    let sent = out.take();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1.wants[0].kind), (p2, WantType::Block));
}

#[test]
fn a_silent_peer_times_out_and_waiters_expire() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (p1, p2) = (PeerId::random(), PeerId::random());
    e.connected(p1, &mut out);
    e.connected(p2, &mut out);
    let b = block(b"slow");
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    e.fetch(*b.cid(), 1, tx, start + Duration::from_secs(30), start, &mut out);
    e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
    e.received(p2, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
    out.take();
    e.tick(Instant::now() + BLOCK_TIMEOUT + Duration::from_secs(1), &mut out);
    let asked: Vec<PeerId> = out.take().into_iter().filter(|(_, m)| !m.wants.is_empty()).map(|(p, _)| p).collect();
    assert_eq!(asked, vec![p2]);
    e.tick(start + Duration::from_secs(31), &mut out);
    assert!(matches!(rx.try_recv().unwrap(), Err(FetchError::Timeout(_))));
    assert_eq!(e.wanted(), 0);
}

#[test]
fn a_peer_that_holds_everything_is_asked_last() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (seed, other) = (PeerId::random(), PeerId::random());
    e.connected(seed, &mut out);
    e.connected(other, &mut out);
    // The seed has answered HAVE for many blocks before.
    let earlier: Vec<Cid> = (0..50u32).map(|i| *block(&i.to_le_bytes()).cid()).collect();
    e.received(seed, Message { haves: earlier, ..Message::default() }, Instant::now(), &mut out);
    let b = block(b"both have it");
    let (tx, _rx) = tokio::sync::oneshot::channel();
    e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
    out.take();
    e.received(seed, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
    assert!(out.take().is_empty(), "chose before the other peer answered");
    e.received(other, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
    let sent = out.take();
    assert_eq!((sent.len(), sent[0].0), (1, other));
}

#[test]
fn room_a_delivered_block_frees_is_taken_at_once_not_at_the_next_tick() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let seed = PeerId::random();
    e.connected(seed, &mut out);
    let blocks: Vec<Block> = (0..12u8).map(|i| block(&[i; 100])).collect();
    let start = Instant::now();
    let _rxs = want_all(&mut e, &blocks, PRIORITY_AHEAD, start, &mut out);
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    e.received(seed, Message { haves: cids.clone(), ..Message::default() }, start, &mut out);
    let asked = |sent: &[(PeerId, Message)]| -> Vec<Cid> {
        sent.iter().flat_map(|(_, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(|w| w.cid)).collect()
    };
    let first = asked(&out.take());
    assert_eq!(first, cids[..INITIAL_WINDOW], "the initial window, in the order wanted");

    // The first block comes quickly: the seed's window opens, and the four wants left
    // are asked for in the same call, with no tick between.
    let got = e.received(
        seed,
        Message { blocks: vec![blocks[0].clone()], ..Message::default() },
        start + Duration::from_millis(1),
        &mut out,
    );
    assert_eq!(got.len(), 1);
    // (Read-ahead goes in this node's shuffled order, not file order.)
    let mut rest = asked(&out.take());
    rest.sort();
    let mut expected = cids[INITIAL_WINDOW..].to_vec();
    expected.sort();
    assert_eq!(rest, expected, "the rest go out as the block comes");
    // The seed counts as sending for a while after its block.
    assert_eq!(e.stats_at(start + Duration::from_millis(1)).sending_peers, 1);
    assert_eq!(e.stats_at(start + RECENT + Duration::from_millis(1)).sending_peers, 0);
}

#[test]
fn a_slow_peer_gets_a_small_window_and_its_queued_wants_move_to_a_peer_with_room() {
    let mut out = Sent::default();
    let (mut e, _rxs, seed, other, blocks, start, first) = seed_and_other(1, &mut out);
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    let asked = |sent: &[(PeerId, Message)], peer: PeerId| -> Vec<Cid> {
        sent.iter()
            .filter(|(p, _)| *p == peer)
            .flat_map(|(_, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(|w| w.cid))
            .collect()
    };

    // The seed takes a second for one block: about one block a second, so its window
    // shrinks to the minimum and nothing more is asked of it.
    let got = e.received(
        seed,
        Message { blocks: vec![blocks.iter().find(|b| *b.cid() == first[0]).unwrap().clone()], ..Message::default() },
        start + Duration::from_secs(1),
        &mut out,
    );
    e.stored(&got, Ok(()), &mut out);
    e.tick(start + Duration::from_secs(1), &mut out);
    assert!(asked(&out.take(), seed).is_empty(), "7 in flight is over the slow seed's window");

    // The other peer now has a block still queued at the seed, and one nobody was asked
    // for: both go to it, and the seed is told to drop the first.
    let queued = first[3];
    let waiting = *cids.iter().find(|c| !first.contains(c)).unwrap();
    let have = Message { haves: vec![queued, waiting], ..Message::default() };
    e.received(other, have, start + Duration::from_millis(1100), &mut out);
    let sent = out.take();
    let mut to_other = asked(&sent, other);
    to_other.sort();
    let mut expected = vec![queued, waiting];
    expected.sort();
    assert_eq!(to_other, expected);
    assert!(sent.iter().any(|(p, m)| *p == seed && m.cancels == vec![queued]), "{sent:?}");
    assert_eq!(e.stats().wants_moved, 1);
}

/// A block a reader waits on, queued at a peer that turns out slow, moves at the next tick
/// to a peer that said HAVE and has room, without waiting for the block timeout.
#[test]
fn a_waited_block_leaves_a_peer_that_became_backlogged_at_the_tick() {
    let mut out = Sent::default();
    let (mut e, _rxs, seed, other, blocks, start, first) = seed_and_other(PRIORITY_READER, &mut out);
    // The other peer gets a block still queued at the seed while the seed looks fine.
    let queued = first[3];
    let have = Message { haves: vec![queued], ..Message::default() };
    e.received(other, have, start + Duration::from_millis(100), &mut out);
    assert!(out.take().iter().all(|(_, m)| m.cancels.is_empty()), "the seed is not backlogged yet");
    // The seed takes a second for one block: its window shrinks and its queue is too long.
    let one = blocks.iter().find(|b| *b.cid() == first[0]).unwrap().clone();
    let got =
        e.received(seed, Message { blocks: vec![one], ..Message::default() }, start + Duration::from_secs(1), &mut out);
    e.stored(&got, Ok(()), &mut out);
    out.take();
    e.tick(start + Duration::from_secs(1), &mut out);
    let sent = out.take();
    assert_moved(&sent, queued, seed, other);
    assert_eq!(e.stats().wants_moved, 1, "only the block another peer has moves");
}

#[test]
fn a_want_is_told_to_a_few_peers_first_and_to_the_rest_when_none_has_it() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let peers: Vec<PeerId> = (0..3 * FIRST_TOLD).map(|_| PeerId::random()).collect();
    for p in &peers {
        e.connected(*p, &mut out);
    }
    let start = Instant::now();
    let told = |sent: &[(PeerId, Message)], cid: Cid| -> HashSet<PeerId> {
        sent.iter().filter(|(_, m)| m.wants.iter().any(|w| w.cid == cid)).map(|(p, _)| *p).collect()
    };
    let mut rxs = Vec::new();
    let mut fetch = |e: &mut Engine, b: &Block, out: &mut Sent| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        rxs.push(rx);
        e.fetch(*b.cid(), PRIORITY_AHEAD, tx, far(), start, out);
    };

    // A peer that just delivered a block is among the first told of the next one.
    let (first, second) = (block(b"first"), block(b"second"));
    fetch(&mut e, &first, &mut out);
    let asked = told(&out.take(), *first.cid());
    assert_eq!(asked.len(), FIRST_TOLD, "{FIRST_TOLD} of {} peers", peers.len());
    let giver = *asked.iter().next().unwrap();
    e.received(giver, Message { haves: vec![*first.cid()], ..Message::default() }, start, &mut out);
    e.tick(start + HAVE_WAIT, &mut out);
    let got = e.received(giver, Message { blocks: vec![first.clone()], ..Message::default() }, start, &mut out);
    e.stored(&got, Ok(()), &mut out);
    out.take();
    fetch(&mut e, &second, &mut out);
    let asked = told(&out.take(), *second.cid());
    assert_eq!(asked.len(), FIRST_TOLD);
    assert!(asked.contains(&giver));

    // None of them has it: every one says so, and then the rest are told at once.
    assert_eq!(e.peers_answer(second.cid()), None);
    assert!(!e.told_everyone(second.cid()), "{} peers are still to be told", peers.len() - FIRST_TOLD);
    for p in &asked {
        e.received(*p, Message { dont_haves: vec![*second.cid()], ..Message::default() }, start, &mut out);
    }
    assert_eq!(e.peers_answer(second.cid()), None, "the others have not been asked yet");
    assert!(e.told_everyone(second.cid()));
    let rest = told(&out.take(), *second.cid());
    assert_eq!(rest.len(), peers.len() - FIRST_TOLD);
    assert!(rest.is_disjoint(&asked));
    assert_eq!(e.stats().wants_widened, 1);
    for p in &rest {
        e.received(*p, Message { dont_haves: vec![*second.cid()], ..Message::default() }, start, &mut out);
    }
    assert_eq!(e.peers_answer(second.cid()), Some(false), "every peer said it lacks the block");

    // Silence widens too, once HAVE_WAIT has passed.
    let third = block(b"third");
    fetch(&mut e, &third, &mut out);
    assert_eq!(told(&out.take(), *third.cid()).len(), FIRST_TOLD);
    e.tick(start + HAVE_WAIT / 2, &mut out);
    assert!(told(&out.take(), *third.cid()).is_empty());
    e.tick(start + HAVE_WAIT, &mut out);
    assert_eq!(told(&out.take(), *third.cid()).len(), peers.len() - FIRST_TOLD);

    // A few peers are all told at once.
    let (mut e, mut out) = (Engine::default(), Sent::default());
    for p in &peers[..FIRST_TOLD] {
        e.connected(*p, &mut out);
    }
    let fourth = block(b"fourth");
    fetch(&mut e, &fourth, &mut out);
    assert_eq!(told(&out.take(), *fourth.cid()).len(), FIRST_TOLD);
}

#[test]
fn a_block_a_reader_waits_on_leaves_a_silent_peer_after_the_urgent_wait() {
    // A crowd's first moments: the seed, asked for everything, has sent nothing yet (so it
    // has no rate), and another reader says it has the block this reader waits on.
    let mut out = Sent::default();
    let (mut e, _rxs, seed, other, _blocks, start, first) = seed_and_other(PRIORITY_READER, &mut out);
    let waited = first[0];
    let have = Message { haves: vec![waited], ..Message::default() };
    e.received(other, have.clone(), start + URGENT_WAIT / 2, &mut out);
    e.tick(start + URGENT_WAIT / 2, &mut out);
    assert!(out.take().iter().all(|(_, m)| m.cancels.is_empty()), "too early to move");
    e.tick(start + URGENT_WAIT + Duration::from_millis(50), &mut out);
    let sent = out.take();
    assert_moved(&sent, waited, seed, other);
    assert_eq!(e.stats().wants_moved, 1);

    // Read-ahead is not urgent: the same wait leaves it where it is.
    let mut out = Sent::default();
    let (mut e, _rxs, _seed, other, _blocks, start, first) = seed_and_other(PRIORITY_AHEAD, &mut out);
    e.received(other, Message { haves: vec![first[0]], ..Message::default() }, start, &mut out);
    e.tick(start + URGENT_WAIT * 3, &mut out);
    e.received(other, Message { haves: vec![first[1]], ..Message::default() }, start + URGENT_WAIT * 3, &mut out);
    assert_eq!(e.stats().wants_moved, 0, "{:?}", out.take());
}

/// A block a reader waits on leaves a silent peer for one that said HAVE even when that
/// one's window is full of read-ahead: it takes the one slot past the window.
#[test]
fn a_waited_block_moves_to_a_peer_whose_window_read_ahead_filled() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (slow, fast) = (PeerId::random(), PeerId::random());
    e.connected(slow, &mut out);
    e.connected(fast, &mut out);
    let start = Instant::now();
    let mut rxs = Vec::new();
    let mut want = |e: &mut Engine, data: &[u8], priority: i32, holder: PeerId, out: &mut Sent| {
        want_answered(e, data, priority, &[slow, fast], &[holder], start, &mut rxs, out)
    };
    // Read-ahead fills the fast peer's window; the next block only the slow one has.
    for i in 0..INITIAL_WINDOW as u8 {
        want(&mut e, &[1, i], PRIORITY_AHEAD, fast, &mut out);
    }
    let next = want(&mut e, b"next", PRIORITY_AHEAD, slow, &mut out);
    let sent = out.take();
    assert!(sent.iter().any(|(p, m)| *p == slow && m.wants.iter().any(|w| w.cid == next && w.kind == WantType::Block)));
    // The player reaches it, and the fast peer has it now.
    let later = start + URGENT_WAIT * 2;
    let (tx, rx) = tokio::sync::oneshot::channel();
    rxs.push(rx);
    e.fetch(next, PRIORITY_READER, tx, far(), later, &mut out);
    e.received(fast, Message { haves: vec![next], ..Message::default() }, later, &mut out);
    assert_moved(&out.take(), next, slow, fast);
}

/// When peers' windows are full, the room that frees goes first to the block a reader
/// waits for, then to read-ahead, then to the rarest of the bulk blocks.
#[test]
fn freed_room_goes_to_readers_then_read_ahead_then_the_rarest_block() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let (p, q) = (PeerId::random(), PeerId::random());
    e.connected(p, &mut out);
    e.connected(q, &mut out);
    let start = Instant::now();
    let mut rxs = Vec::new();
    let mut want = |e: &mut Engine, data: &[u8], priority: i32, holders: &[PeerId], out: &mut Sent| -> Cid {
        want_answered(e, data, priority, &[p, q], holders, start, &mut rxs, out)
    };
    // Both peers' windows fill up with blocks both hold.
    let fillers: Vec<Cid> =
        (0..2 * INITIAL_WINDOW as u8).map(|i| want(&mut e, &[0, i], PRIORITY_BULK, &[p, q], &mut out)).collect();
    let asked = |sent: &[(PeerId, Message)]| -> Vec<(PeerId, Cid)> {
        sent.iter()
            .flat_map(|(peer, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(move |w| (*peer, w.cid)))
            .collect()
    };
    let filled = asked(&out.take());
    assert_eq!(filled.len(), 2 * INITIAL_WINDOW, "{filled:?}");
    // Then, with no room anywhere: a common bulk block, a rare one, and read-ahead, wanted
    // in that order. Nothing can be asked yet.
    let common = want(&mut e, b"common", PRIORITY_BULK, &[p, q], &mut out);
    let rare = want(&mut e, b"rare", PRIORITY_BULK, &[p], &mut out);
    let ahead = want(&mut e, b"ahead", PRIORITY_AHEAD, &[p], &mut out);
    assert!(asked(&out.take()).is_empty());
    // The block a reader waits for takes the one slot past the window at once; a second
    // one finds none.
    let reader = want(&mut e, b"reader", PRIORITY_READER, &[p], &mut out);
    assert_eq!(asked(&out.take()), vec![(p, reader)]);
    let second = want(&mut e, b"second reader", PRIORITY_READER, &[p], &mut out);
    assert!(asked(&out.take()).is_empty());
    // One slot frees on p at a time (it turns out not to have a filler it was asked for).
    let of_p: Vec<Cid> = filled.iter().filter(|(peer, _)| *peer == p).map(|(_, c)| *c).collect();
    // The first slot goes to the second reader's block, which takes the one past the
    // window again; the next frees that one, and the others go one at a time.
    let mut order = Vec::new();
    for (i, gone) in of_p.iter().take(5).enumerate() {
        let now = start + HAVE_WAIT + Duration::from_millis(i as u64);
        e.received(p, Message { dont_haves: vec![*gone], ..Message::default() }, now, &mut out);
        e.tick(now, &mut out);
        let next = asked(&out.take());
        assert_eq!(next.len(), usize::from(i != 1), "one slot, one ask: {next:?}");
        assert!(next.iter().all(|(peer, _)| *peer == p));
        order.extend(next.into_iter().map(|(_, c)| c));
    }
    assert_eq!(order, vec![second, ahead, rare, common]);
    assert!(fillers.iter().all(|f| !order.contains(f)));
}
