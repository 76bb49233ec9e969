//! Roster mode: signing keys ended by the roster (rotation, compromise cut-offs) judge what is verified, held for a gap, or already stored.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_verify_by_seq_and_a_compromise_cut_off_refuses_later_entries() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let old_seqs = net.publish_domains(&sg, "old", 3).await;
    let last_old = *old_seqs.last().unwrap();
    net.wait_holds(&hub, &sg, last_old).await.unwrap();

    // Rotation: the old key ends at SG's head, the new one starts after it; SG restarts with
    // the new key.
    net.stop(&sg).await;
    let dir = net.fed.nodes[&sg].dir.clone();
    let old_key = signing_key(&dir);
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::remove_file(dir.join("signing.key")).unwrap();
    intelmesh_node::keys::write_private(&dir.join("signing.key"), &new_key).unwrap();
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(last_old);
        m.signing_keys[0].ended_by = pb::KeyEnd::Rotation as i32;
        m.signing_keys.push(pb::MemberKey {
            public_key: new_key.verifying_key().to_bytes().to_vec(),
            first_seq: last_old + 1,
            last_seq: None,
            ended_by: 0,
        });
    })
    .await;
    net.start(&sg).await;
    // It signs with the new key once the version that lists it reaches it.
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    let new_seqs = net.publish_domains(&sg, "new", 2).await;
    net.wait_holds(&hub, &sg, *new_seqs.last().unwrap())
        .await
        .unwrap();
    let keys = net.node(&hub).state().keys();
    let check = intelmesh_store::verify_store(&net.node(&hub).state().store, Some(keys.as_ref()))
        .expect("verify-store runs");
    assert!(
        check.is_ok(),
        "old entries verify with the old key, new with the new: {check:?}"
    );

    // Compromise of the new key reported at its first seq: later entries signed with it are
    // refused (the thief's), earlier ones stay.
    let cut_off = last_old + 1;
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[1].last_seq = Some(cut_off);
        m.signing_keys[1].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    let thief = Signer::new(sg.clone(), new_key);
    let head = net.node(&hub).state().store.head(&sg).unwrap();
    let (stolen, _) = thief.sign_next(
        head,
        now_unix_ms(),
        &green(),
        &domain_upsert("thief.example"),
    );
    let report = net.node(&hub).state().ingest(vec![stolen]).await.unwrap();
    assert_eq!(report.appended, 0);
    assert!(
        report.refused.iter().any(|e| e.is_origin_fault()),
        "past the cut-off: {:?}",
        report.refused
    );
    // What the new key signed past the cut-off, held before the report, left the log with it.
    let store = &net.node(&hub).state().store;
    assert!(*new_seqs.last().unwrap() > cut_off);
    assert_eq!(store.head(&sg).unwrap().unwrap().seq, cut_off);
    assert_eq!(store.range(&sg, 1, 100).unwrap().len() as u64, cut_off);
    drop(old_key);
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compromise_report_removes_entries_already_held_past_the_cut_off() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    // Five entries in a row (the rest of SG's log is checkpoints), held by the hub and AU:
    // what a thief with SG's key would publish before the report.
    let seqs = net.publish_domains(&sg, "cut", 5).await;
    assert_eq!(seqs, (seqs[0]..seqs[0] + 5).collect::<Vec<_>>());
    for o in [&hub, &au] {
        net.wait_holds(o, &sg, seqs[4]).await.unwrap();
        for i in 0..5 {
            assert!(net.finds_domain(o, &sg, "cut", i).await, "{o} has item {i}");
        }
    }
    let cut_off = seqs[1];
    let removed = net
        .node(&hub)
        .state()
        .store
        .range(&sg, cut_off + 1, 1000)
        .unwrap();
    assert!(removed.len() >= 3);

    assert!(
        net.roster(&au).encryption_key(&sg).is_some(),
        "SG is sealed to"
    );
    // The operators report SG's key compromised: SG vouches for its log up to the second.
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(cut_off);
        m.signing_keys[0].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    // SG holds no open key now: its link is cut as the version is followed, which may be before
    // the version reaches it (its operators see why in their status), so it is handed over.
    net.deliver_version(&sg, 3).await;
    for o in [&hub, &au, &sg] {
        net.wait_status(o, PATIENCE, |s| {
            s.roster_version == 3 && s.vector.get("SG-IGCI") == Some(&cut_off)
        })
        .await
        .unwrap_or_else(|e| panic!("{o} cuts SG's log back to #{cut_off}: {e}"));
    }
    for o in [&hub, &au] {
        net.assert_cut_at(o, &sg, cut_off, ("cut", 2, 5)).await;
    }

    // A peer that has not seen the report yet sends the removed entries again: refused as
    // signed past the cut-off (the origin's fault, not the relay's), nothing comes back.
    let report = net.node(&au).state().ingest(removed.clone()).await.unwrap();
    assert_eq!(report.appended + report.held + report.duplicates, 0);
    assert_eq!(report.refused.len(), removed.len());
    assert!(
        report.refused.iter().all(|e| e.is_origin_fault()),
        "{:?}",
        report.refused
    );
    assert_eq!(net.node(&au).state().vector().unwrap()[&sg], cut_off);
    // SG cannot sign past the cut-off with that key.
    let err = net
        .node(&sg)
        .state()
        .publish(vec![(green(), domain_upsert("after.example"))])
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::OwnKeyEnded { .. }), "{err}");

    // AU's link stays up (a refusal for an ended key never cuts one) and quiet; SG's is
    // refused: whoever stole its key may hold its certificate too.
    let compromised = "SG-IGCI's signing key is reported compromised in roster version 3";
    net.wait_status(&hub, PATIENCE, |s| refused_for(s, &sg, compromised))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = net.status(&hub);
    assert!(
        peer(&s, &au).is_some_and(|p| p.connected),
        "{:?}",
        peer(&s, &au)
    );
    assert!(refused_for(&s, &sg, compromised), "{:?}", peer(&s, &sg));
    for o in [&sg, &au] {
        assert_eq!(net.status(o).vector.get("SG-IGCI"), Some(&cut_off), "{o}");
    }
    assert_eq!(s.vector.get("SG-IGCI"), Some(&cut_off));
    // Nothing new is sealed to it.
    assert!(net.roster(&au).encryption_key(&sg).is_none());
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_held_for_a_gap_are_dropped_when_the_roster_ends_their_key_below_them() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    let seqs = net.publish_domains(&sg, "before", 2).await;
    net.wait_holds(&au, &sg, seqs[1]).await.unwrap();
    // SG's node stops (it would sign checkpoints at the seqs the thief uses); a thief with its
    // key signs six entries after SG's head and gives AU all but the first.
    net.stop(&sg).await;
    let head = net.node(&au).state().store.head(&sg).unwrap();
    let thief = Signer::new(sg.clone(), signing_key(&net.fed.nodes[&sg].dir));
    let (mut stolen, mut at) = (Vec::new(), head);
    for i in 0..6 {
        let (entry, next) = thief.sign_next(
            at,
            now_unix_ms(),
            &green(),
            &domain_upsert(&format!("thief-{i}.example")),
        );
        stolen.push(entry);
        at = Some(next);
    }
    let first = head.map_or(1, |h| h.seq + 1);
    let report = net
        .node(&au)
        .state()
        .ingest(stolen[1..].to_vec())
        .await
        .unwrap();
    assert_eq!(report.held, 5, "{report:?}");

    // The key is reported compromised: SG vouches for its log up to the thief's third entry.
    let cut_off = first + 2;
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(cut_off);
        m.signing_keys[0].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    // The gap closes: what the key signed up to the cut-off is appended, what it signed past
    // it (held when the report came) is not.
    let report = net
        .node(&au)
        .state()
        .ingest(stolen[..1].to_vec())
        .await
        .unwrap();
    assert_eq!(report.appended as u64, cut_off - first + 1, "{report:?}");
    let store = &net.node(&au).state().store;
    assert_eq!(store.head(&sg).unwrap().map(|h| h.seq), Some(cut_off));
    assert!(store.range(&sg, cut_off + 1, 10).unwrap().is_empty());
    // The thief's entries past the cut-off, sent again: refused for their key's range once
    // verified; sent again after that, refused the same way without a signature check.
    let past = stolen[3..].to_vec();
    let state = net.node(&au).state();
    let first = state.ingest(past.clone()).await.unwrap();
    let key_range = |e: &intelmesh_core::VerifyError| {
        matches!(e, intelmesh_core::VerifyError::KeyNotValidAtSeq { .. })
    };
    assert_eq!(
        first.refused.iter().filter(|e| key_range(e)).count(),
        3,
        "{first:?}"
    );
    assert!(first.refused_again.is_empty(), "{first:?}");
    let again = state.ingest(past).await.unwrap();
    assert!(again.refused.is_empty(), "{again:?}");
    assert_eq!(
        again.refused_again.iter().filter(|e| key_range(e)).count(),
        3,
        "{again:?}"
    );
    assert_eq!(again.appended, 0);
    let keys = net.node(&au).state().keys();
    let check = intelmesh_store::verify_store(store, Some(keys.as_ref())).expect("verify-store");
    assert!(check.is_ok(), "{:?}", check.problems);
    for o in [hub, au] {
        net.stop(&o).await;
    }
}

/// A rotation's new entries wait for their key (unknown until the version lists it); a thief
/// of the old key chains an entry onto them, held for the gap. When the version comes, the
/// recheck appends the new key's entries and closes the gap: the thief's entry, past the old
/// key's end, must not follow them in, nor make the member's next real entry a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_held_for_a_gap_is_not_appended_past_its_keys_end_when_a_rotation_closes_the_gap()
{
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    let seqs = net.publish_domains(&sg, "before", 2).await;
    net.wait_holds(&au, &sg, seqs[1]).await.unwrap();
    net.stop(&sg).await;
    let head = net.node(&au).state().store.head(&sg).unwrap();
    let last_old = head.map_or(0, |h| h.seq);
    let old_key = signing_key(&net.fed.nodes[&sg].dir);
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    // The member's two entries under its new key, and the thief's third, chained on them.
    let member = Signer::new(sg.clone(), new_key.clone());
    let (mut rotated, mut at) = (Vec::new(), head);
    for i in 0..2 {
        let (entry, next) = member.sign_next(
            at,
            now_unix_ms(),
            &green(),
            &domain_upsert(&format!("rotated-{i}.example")),
        );
        rotated.push(entry);
        at = Some(next);
    }
    let thief = Signer::new(sg.clone(), old_key);
    let (stolen, _) = thief.sign_next(at, now_unix_ms(), &green(), &domain_upsert("thief.example"));
    let state = net.node(&au).state();
    let report = state.ingest(rotated.clone()).await.unwrap();
    assert_eq!(
        report.unverifiable, 2,
        "the new key is not listed yet: {report:?}"
    );
    let report = state.ingest(vec![stolen]).await.unwrap();
    assert_eq!(report.held, 1, "the old key still signs there: {report:?}");

    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(last_old);
        m.signing_keys[0].ended_by = pb::KeyEnd::Rotation as i32;
        m.signing_keys.push(pb::MemberKey {
            public_key: new_key.verifying_key().to_bytes().to_vec(),
            first_seq: last_old + 1,
            last_seq: None,
            ended_by: 0,
        });
    })
    .await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    let store = &net.node(&au).state().store;
    let deadline = std::time::Instant::now() + PATIENCE;
    while store.head(&sg).unwrap().map_or(0, |h| h.seq) < last_old + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key's entries were not appended: head {:?}",
            store.head(&sg).unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Settled: nothing past the member's own entries, and its next real entry is taken.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        store.range(&sg, last_old + 3, 10).unwrap().is_empty(),
        "the old key's entry past its end was appended"
    );
    let (next, _) = member.sign_next(
        Some(store.head(&sg).unwrap().expect("a head")),
        now_unix_ms(),
        &green(),
        &domain_upsert("rotated-2.example"),
    );
    let report = net.node(&au).state().ingest(vec![next]).await.unwrap();
    assert_eq!(report.appended, 1, "{report:?}");
    let keys = net.node(&au).state().keys();
    let check = intelmesh_store::verify_store(store, Some(keys.as_ref())).expect("verify-store");
    assert!(check.is_ok(), "{:?}", check.problems);
    for o in [hub, au] {
        net.stop(&o).await;
    }
}
