//! The hub console: served over mutual TLS to the hub's operators only, listing every member
//! with its status, and following a suspension live. Checked with a real rustls client and
//! with a real headless Chromium (scripts/browser-deps.sh installs it) presenting certificates
//! from its NSS database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_tests::browser::Browser;
use intelmesh_tests::console::ConsoleNet;
use serde_json::Value;

const AGENCIES: [&str; 3] = ["AU-AFP", "SG-IGCI", "NZ-POL"];

fn org(s: &str) -> OrgId {
    OrgId::parse(s).expect("org id")
}

/// org → (status, link) from the console's JSON.
fn statuses(json: &Value) -> BTreeMap<String, (String, String)> {
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["org"].as_str().expect("org").to_string(),
                (
                    m["status"].as_str().expect("status").to_string(),
                    m["link"].as_str().expect("link").to_string(),
                ),
            )
        })
        .collect()
}

fn expected(suspended: Option<&str>) -> BTreeMap<String, (String, String)> {
    let mut want = BTreeMap::from([("HUB".to_string(), ("active".into(), "self".into()))]);
    for a in AGENCIES {
        let row = if Some(a) == suspended {
            ("suspended".into(), "down".into())
        } else {
            ("active".into(), "up".into())
        };
        want.insert(a.to_string(), row);
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_hubs_operators_get_the_console_and_its_json_follows_the_roster() {
    let c = ConsoleNet::start(&AGENCIES).await;
    let alice = c.admin("HUB", "alice");

    let json = c
        .get(Some(&alice), "/api/federation.json")
        .await
        .expect("JSON");
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        json.header("cross-origin-resource-policy"),
        Some("same-origin")
    );
    // Another site's page, in the operator's browser (which presents the certificate): its
    // requests are marked so, and refused.
    for site in ["cross-site", "same-site"] {
        let mut tls = intelmesh_tests::console::tls_stream(c.addr, &c.ca, Some(&alice))
            .await
            .expect("TLS");
        let marked = format!("Sec-Fetch-Site: {site}\r\n");
        let host = c.addr.to_string();
        let path = "/api/federation.json";
        let answer =
            intelmesh_tests::http1::exchange_with(&mut tls, &host, "GET", path, None, &marked)
                .await
                .expect("an answer");
        assert_eq!(answer.status, 403, "{site}: {}", answer.text());
    }
    // A link the operator follows from another site (a ticket, a wiki) opens the page.
    let mut tls = intelmesh_tests::console::tls_stream(c.addr, &c.ca, Some(&alice))
        .await
        .expect("TLS");
    let navigation = "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\n";
    let host = c.addr.to_string();
    let answer =
        intelmesh_tests::http1::exchange_with(&mut tls, &host, "GET", "/", None, navigation)
            .await
            .expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(json.header("cache-control"), Some("no-store"));
    let csp = json.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let v: Value = serde_json::from_slice(&json.body).expect("JSON body");
    assert_eq!(v["hub"], "HUB");
    assert_eq!(v["roster_version"], 2);
    assert_eq!(statuses(&v), expected(None));

    let index = c.get(Some(&alice), "/").await.expect("index");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = index.text();
    for member in ["HUB"].iter().chain(&AGENCIES) {
        assert!(
            html.contains(&format!(r#"<tr data-org="{member}" data-status="active">"#)),
            "{member} in {html}"
        );
    }
    let detail = c.get(Some(&alice), "/member/AU-AFP").await.expect("detail");
    assert_eq!(detail.status, 200);
    assert!(
        detail.text().contains("<h2>Member AU-AFP</h2>"),
        "{}",
        detail.text()
    );
    assert!(
        detail.text().contains("add member AU-AFP"),
        "{}",
        detail.text()
    );
    let unknown = c
        .get(Some(&alice), "/member/XX-NONE")
        .await
        .expect("answer");
    assert_eq!(unknown.status, 404);
    let script = c.get(Some(&alice), "/console.js").await.expect("script");
    assert_eq!(script.status, 200);
    assert!(script.text().contains("/api/federation.json"));

    // No certificate: the handshake fails, no HTTP answer at all.
    let refused = c.get(None, "/api/federation.json").await;
    assert!(refused.is_err(), "{refused:?}");
    // A service certificate of the hub's own org, and an admin certificate of another org
    // from the same CA: through TLS, refused by role and org.
    let service = c.get(Some(&c.service()), "/").await.expect("answer");
    assert_eq!(service.status, 403);
    assert!(
        service
            .text()
            .contains("needs a certificate of role admin; service HUB/"),
        "{}",
        service.text()
    );
    assert!(!service.text().contains("AU-AFP"));
    let foreign = c.admin("AU-AFP", "mallory");
    let foreign = c
        .get(Some(&foreign), "/api/federation.json")
        .await
        .expect("answer");
    assert_eq!(foreign.status, 403);
    assert!(foreign
        .text()
        .contains("admin certificate of HUB; this one is of AU-AFP"));

    c.net.suspend(&org("NZ-POL")).await;
    let json = c
        .get(Some(&alice), "/api/federation.json")
        .await
        .expect("JSON");
    let v: Value = serde_json::from_slice(&json.body).expect("JSON body");
    assert_eq!(v["roster_version"], 3);
    assert_eq!(statuses(&v)["NZ-POL"].0, "suspended");
    let history = c.get(Some(&alice), "/roster").await.expect("roster page");
    assert_eq!(history.status, 200);
    let history = history.text();
    assert!(history.contains("<strong>version 3</strong>"), "{history}");
    assert!(history.contains("suspend NZ-POL"), "{history}");
    let mut net = c.net;
    for o in AGENCIES.iter().map(|a| org(a)).chain([org("HUB")]) {
        net.stop(&o).await;
    }
}

/// The rows the open page shows: org → status cell text.
async fn shown(browser: &Browser) -> BTreeMap<String, String> {
    let rows = browser
        .eval(
            "return Array.from(document.querySelectorAll('#members tbody tr')).map(tr => \
             [tr.dataset.org, tr.querySelector('td[data-field=status]').textContent])",
        )
        .await;
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[0].as_str().expect("org").to_string(),
                r[1].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_with_an_admin_certificate_sees_every_member_and_a_suspension_live() {
    let c = ConsoleNet::start(&AGENCIES).await;
    let alice = c.admin("HUB", "alice");
    let admin = Browser::open(&c.ca, Some((&alice.cert, &alice.key))).await;
    admin.goto(&c.url()).await.expect("the console loads");
    let want: BTreeMap<String, String> = expected(None)
        .into_iter()
        .map(|(o, (s, _))| (o, s))
        .collect();
    assert_eq!(shown(&admin).await, want, "{}", admin.text().await);
    assert_eq!(
        admin
            .eval("return document.getElementById('roster-version').textContent")
            .await,
        "2"
    );
    // A mark a reload would wipe: the change below must arrive in this same page.
    admin.eval("window.intelmeshMark = 42; return null").await;

    c.net.suspend(&org("NZ-POL")).await;
    let start = Instant::now();
    loop {
        let rows = shown(&admin).await;
        if rows.get("NZ-POL").map(String::as_str) == Some("suspended") {
            assert_eq!(rows.len(), 4, "{rows:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the open page never showed NZ-POL suspended: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(admin.eval("return window.intelmeshMark").await, 42);
    assert_eq!(
        admin
            .eval("return document.getElementById('roster-version').textContent")
            .await,
        "3"
    );
    if let Some(path) = std::env::var_os("INTELMESH_CONSOLE_SCREENSHOT") {
        std::fs::write(path, admin.screenshot().await).expect("screenshot written");
    }
    admin.close().await;

    // Without a client certificate Chromium gets no page from the console.
    let anonymous = Browser::open(&c.ca, None).await;
    let _ = anonymous.goto(&c.url()).await;
    let text = anonymous.text().await;
    assert!(shown(&anonymous).await.is_empty(), "{text}");
    assert!(
        !text.contains("AU-AFP") && !text.contains("Roster version"),
        "{text}"
    );
    anonymous.close().await;

    // With a service certificate it gets the console's refusal.
    let soc = c.service();
    let service = Browser::open(&c.ca, Some((&soc.cert, &soc.key))).await;
    service.goto(&c.url()).await.expect("an answer");
    let text = service.text().await;
    assert!(text.contains("needs a certificate of role admin"), "{text}");
    assert!(shown(&service).await.is_empty(), "{text}");
    service.close().await;

    let mut net = c.net;
    for o in AGENCIES.iter().map(|a| org(a)).chain([org("HUB")]) {
        net.stop(&o).await;
    }
}
