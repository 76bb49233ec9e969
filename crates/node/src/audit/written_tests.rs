use super::*;

fn pending(method: &str) -> Pending {
    Pending {
        time_ms: 1,
        caller: caller_of_identity(None),
        method: method.into(),
        values: Vec::new(),
        code: 0,
        result: "OK".into(),
    }
}

#[tokio::test]
async fn a_change_is_answered_only_once_its_record_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    let audit = dir_of(dir.path());
    // What the trail's files hold now, synced or not.
    let written = || -> String {
        let files = trail::trail_files(&audit).unwrap();
        let text = |n: &u64| std::fs::read_to_string(audit.join(intelmesh_audit::file_name(*n)));
        files.iter().map(|n| text(n).unwrap()).collect()
    };
    log.record(pending("Indicators/Get")).await;
    assert!(
        !written().contains("Indicators/Get"),
        "a read is only queued"
    );
    log.record_written(pending("Indicators/Submit")).await;
    assert!(
        written().contains("Indicators/Submit"),
        "written before the answer"
    );
    log.close().await;
}

/// A lookup shares its values with the chunks that answer them: dropped before its end (its
/// caller went away), it is recorded naming them as given; ended, it names what it was told.
#[tokio::test]
async fn a_call_dropped_before_its_end_names_the_values_it_shared() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&AuditConfig::default(), dir.path())
        .await
        .unwrap();
    let asked = std::sync::Arc::new(vec!["1[.]2.3.4".to_string(), "Evil.Example".to_string()]);
    let request = tonic::Request::new(());
    drop(
        log.begin(&request, "Indicators/Lookup", Vec::new())
            .raw_if_dropped(std::sync::Arc::clone(&asked)),
    );
    let ended = log
        .begin(&request, "Indicators/Lookup", Vec::new())
        .raw_if_dropped(std::sync::Arc::clone(&asked))
        .naming(vec![Value::Canonical("1.2.3.4".into())]);
    ended.end(Ok::<(), tonic::Status>(())).await.unwrap();
    log.close().await;
    let audit = dir_of(dir.path());
    let key = trail::load_key(&audit).unwrap();
    let records: Vec<intelmesh_audit::Record> = trail::trail_files(&audit)
        .unwrap()
        .iter()
        .flat_map(|n| {
            let text = std::fs::read_to_string(audit.join(intelmesh_audit::file_name(*n))).unwrap();
            text.lines()
                .map(|l| intelmesh_audit::parse_line(l).unwrap().record)
                .collect::<Vec<_>>()
        })
        .filter(|r| r.method == "Indicators/Lookup")
        .collect();
    let seen: Vec<(u64, Vec<String>, bool)> = records
        .into_iter()
        .map(|r| (r.values, r.digests, r.result.starts_with("CANCELLED")))
        .collect();
    let digest = |v: &str| key.digest(None, v);
    assert_eq!(
        seen,
        [
            (2, vec![digest("1.2.3.4"), digest("evil.example")], true),
            (1, vec![digest("1.2.3.4")], false),
        ]
    );
}
