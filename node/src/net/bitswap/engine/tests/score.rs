use super::*;

#[test]
fn unwanted_blocks_cost_score_until_a_ban_that_decays() {
    let (mut e, mut out) = (Engine::default(), Sent::default());
    let p = PeerId::random();
    e.connected(p, &mut out);
    let now = Instant::now();
    // A copy of a block this node wanted and already got costs nothing.
    let wanted = block(b"wanted");
    let (tx, _rx) = tokio::sync::oneshot::channel();
    e.fetch(*wanted.cid(), 1, tx, far(), now, &mut out);
    e.received(p, Message { blocks: vec![wanted.clone()], ..Message::default() }, now, &mut out);
    e.stored(std::slice::from_ref(&wanted), Ok(()), &mut out);
    for _ in 0..5 {
        e.received(p, Message { blocks: vec![wanted.clone()], ..Message::default() }, now, &mut out);
    }
    assert!(!e.is_banned(&p, now));
    assert_eq!(e.stats().duplicate_blocks, 5);
    // Bytes nobody asked for: one and the peer is out.
    e.received(p, Message { blocks: vec![block(&[1])], ..Message::default() }, now, &mut out);
    assert!(e.is_banned(&p, now));
    assert_eq!(e.stats().forged_blocks, 1);
    assert_eq!(e.stats().banned_peers, 1);
    // Kept out while the score decays: still out after one half-life, back after two.
    let later = now + SCORE_HALF_LIFE + Duration::from_secs(1);
    assert!(e.lifted_bans(later).is_empty());
    assert!(e.is_banned(&p, later));
    let lifted = now + SCORE_HALF_LIFE * 2 + Duration::from_secs(1);
    assert_eq!(e.lifted_bans(lifted), vec![p]);
    assert!(!e.is_banned(&p, lifted));
    assert!(e.lifted_bans(lifted).is_empty(), "a ban is lifted once");
    // A second offence soon after bans again, for longer: the score adds up.
    e.received(p, Message { blocks: vec![block(&[2])], ..Message::default() }, lifted, &mut out);
    assert!(e.is_banned(&p, lifted + SCORE_HALF_LIFE * 2 + Duration::from_secs(1)));
    // Decayed scores are forgotten.
    let much_later = lifted + SCORE_HALF_LIFE * 20;
    assert_eq!(e.lifted_bans(much_later), vec![p]);
    assert_eq!(e.scored_peers(), 0);
}

#[test]
fn scores_stay_bounded_when_offenders_keep_changing_identity() {
    let mut e = Engine::default();
    let now = Instant::now();
    for _ in 0..MAX_SCORES + 500 {
        e.penalize(PeerId::random(), PENALTY_MALFORMED, now);
    }
    let banned = PeerId::random();
    assert!(e.penalize(banned, PENALTY_FORGED, now));
    assert!(e.lifted_bans(now).is_empty());
    assert_eq!(e.scored_peers(), MAX_SCORES);
    assert!(e.is_banned(&banned, now), "a ban outlives the cap");
}
