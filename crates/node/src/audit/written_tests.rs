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
