//! Gossipsub's side of the driver: availability hints checked and remembered, other topics'
//! messages rate-limited per source and handed to local subscribers, and what the node
//! subscribes to and publishes.

use std::time::Instant;

use cairn_merkle::Cid;
use libp2p::gossipsub;
use tokio::sync::mpsc;

use super::Driver;
use crate::net::{hints, Multiaddr, NetError, PeerId, Protocol, PubsubError, PubsubMessage, MAX_LOCAL_TOPICS};

impl Driver {
    /// Subscribes to `topic`, its messages going to `sender` (up to [`MAX_LOCAL_TOPICS`]).
    pub(super) fn subscribe(&mut self, topic: String, sender: mpsc::Sender<PubsubMessage>) -> Result<(), NetError> {
        let t = gossipsub::IdentTopic::new(topic);
        if self.topics.len() >= MAX_LOCAL_TOPICS && !self.topics.contains_key(&t.hash()) {
            return Err(PubsubError::TooManyTopics(MAX_LOCAL_TOPICS).into());
        }
        self.swarm.behaviour_mut().gossipsub.subscribe(&t).map_err(PubsubError::from)?;
        self.topics.entry(t.hash()).or_default().push(sender);
        Ok(())
    }

    /// Publishes `data` on `topic`.
    pub(super) fn publish(&mut self, topic: String, data: Vec<u8>) -> Result<(), NetError> {
        let t = gossipsub::IdentTopic::new(topic);
        Ok(self.swarm.behaviour_mut().gossipsub.publish(t, data).map(drop).map_err(PubsubError::from)?)
    }

    /// The peers known to subscribe to `topic`.
    pub(super) fn topic_peers(&self, topic: String) -> Vec<PeerId> {
        let hash = gossipsub::IdentTopic::new(topic).hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Publishes an availability hint for `root` on the hints topic and on `topics`.
    pub(super) fn publish_hint(&mut self, root: Cid, size: u64, manifest: bool, topics: Vec<String>) {
        let addrs: Vec<Multiaddr> =
            self.listening.iter().map(|a| a.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()).collect();
        let data = hints::encode(&root, size, &addrs, manifest);
        for topic in std::iter::once(hints::TOPIC.to_owned()).chain(topics) {
            let gs = &mut self.swarm.behaviour_mut().gossipsub;
            if let Err(e) = gs.publish(gossipsub::IdentTopic::new(topic.clone()), data.clone()) {
                tracing::debug!("hint for {root} not published on {topic}: {e}");
            }
        }
    }

    pub(super) fn on_gossip(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = ev else { return };
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        if message.topic == gossipsub::IdentTopic::new(hints::TOPIC).hash() {
            let verdict = match message.source {
                Some(source) if self.hints.allow(source, Instant::now()) => hints::decode(source, &message.data),
                Some(source) => Err(hints::HintError::TooFast(source)),
                None => Err(hints::HintError::Unsigned),
            };
            let acceptance = match verdict {
                Ok(a) => {
                    self.hints.remember(a);
                    deliver(&mut self.topics, &message);
                    gossipsub::MessageAcceptance::Accept
                }
                Err(e) => {
                    tracing::debug!("rejected a hint from {propagation_source}: {e}");
                    gossipsub::MessageAcceptance::Reject
                }
            };
            gs.report_message_validation_result(&message_id, &propagation_source, acceptance);
            return;
        }
        // Other topics carry what applications put there: Cairn cannot judge the content, but
        // each signed source gets a rate, and what is over it is neither delivered nor relayed.
        let acceptance = match message.source {
            Some(source) if self.topic_rates.allow(source, Instant::now()) => {
                deliver(&mut self.topics, &message);
                gossipsub::MessageAcceptance::Accept
            }
            Some(source) => {
                tracing::debug!("{source} sends too fast on {}", message.topic);
                gossipsub::MessageAcceptance::Reject
            }
            None => gossipsub::MessageAcceptance::Reject,
        };
        gs.report_message_validation_result(&message_id, &propagation_source, acceptance);
    }
}

/// Hands a gossipsub message to the local subscribers of its topic (a slow one misses it).
fn deliver(
    topics: &mut std::collections::HashMap<gossipsub::TopicHash, Vec<mpsc::Sender<PubsubMessage>>>,
    message: &gossipsub::Message,
) {
    if let Some(subs) = topics.get_mut(&message.topic) {
        let m = PubsubMessage {
            from: message.source,
            topic: message.topic.to_string(),
            data: message.data.clone(),
            seqno: message.sequence_number,
        };
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.try_send(m.clone());
        }
    }
}
