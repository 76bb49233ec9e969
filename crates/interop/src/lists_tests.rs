//! Text in, found indicators and left-out lines out.

use super::*;

fn values(read: &TextRead) -> Vec<&str> {
    read.found.iter().map(|f| f.indicator.value()).collect()
}

fn lines_of_found(read: &TextRead) -> Vec<usize> {
    read.found.iter().map(|f| f.line).collect()
}

#[test]
fn comments_start_at_line_start_or_after_whitespace() {
    assert_eq!(strip_comment("# all comment"), "");
    assert_eq!(strip_comment("evil.example  # c2"), "evil.example  ");
    assert_eq!(
        strip_comment("http://x.example/#frag"),
        "http://x.example/#frag"
    );
    assert_eq!(strip_comment("a\t#b"), "a\t");
    assert_eq!(strip_comment(""), "");
}

#[test]
fn plain_lines_are_refanged_annotated_values_kept_and_bad_ones_left_with_a_line() {
    let r = read_plain(
        "# c\nevil[.]example\nhxxp://bad[.]example/x # c2\nnot a value\n\
         E3BC3689F01FD431CD2ED368AE91ECEAA7C465C2781FA7B7DC2EC9143A404F79;CERT-UA note x.exe\n\
         \n   \n203.0.113.7,feodo\n",
    );
    assert_eq!(
        values(&r),
        [
            "evil.example",
            "http://bad.example/x",
            "e3bc3689f01fd431cd2ed368ae91eceaa7c465c2781fa7b7dc2ec9143a404f79",
            "203.0.113.7"
        ]
    );
    assert_eq!(lines_of_found(&r), [2, 3, 5, 8]);
    assert!(r.found.iter().all(|f| f.column.is_none()));
    assert_eq!(r.lines, 5);
    assert_eq!(r.left.len(), 1);
    let left = &r.left[0];
    assert_eq!((left.line, left.text.as_str()), (4, "not a value"));
    assert!(matches!(left.reason, LeftReason::NotAnIndicator(_)));
    assert!(
        left.reason.summary().starts_with("not a valid indicator ("),
        "{}",
        left.reason.summary()
    );
}

#[test]
fn a_prose_line_gives_the_values_it_names_deliberately() {
    let r = read_plain(
        "evil[.]example was seen talking to 203.0.113.7\n\
         The C2 was hxxp://evil[.]example/gate.php (on port 80), then 198.51.100.0/24.\n\
         Mail came from \"phish[at]bad[.]example\"; the dropper's SHA-256 was \
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.\n\
         See README.md and report.pdf, e.g. the appendix at www.example.com for details.\n\
         Nothing here.\n\
         The lure was Studio HD 4.0.9.3 Multilingual.zip, then 5.1.2[.]7 itself.\n",
    );
    assert_eq!(
        values(&r),
        [
            "evil.example",
            "203.0.113.7",
            "http://evil.example/gate.php",
            "198.51.100.0/24",
            "phish@bad.example",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "5.1.2.7",
        ]
    );
    let lines: Vec<usize> = r.found.iter().map(|f| f.line).collect();
    assert_eq!(lines, [1, 1, 2, 2, 3, 3, 6]);
    // Bare dotted words in prose are not taken: only what is written as an indicator on
    // purpose (a version written as an address is taken defanged only).
    let left: Vec<usize> = r.left.iter().map(|l| l.line).collect();
    assert_eq!(left, [4, 5]);
    assert_eq!(r.lines, 6);
}

#[test]
fn a_bare_domain_leading_a_line_is_a_value_in_a_list_and_prose_in_a_report() {
    let list = read_plain("evil.example phishing kit\nbad.example  c2\nREADME.md notes\n");
    assert_eq!(values(&list), ["evil.example", "bad.example", "readme.md"]);
    let report = read_plain(
        "README.md describes the campaign.\nIt used hxxp://evil[.]example/a for staging.\n\
         The operators reused infrastructure.\n",
    );
    assert_eq!(values(&report), ["http://evil.example/a"]);
    let left: Vec<usize> = report.left.iter().map(|l| l.line).collect();
    assert_eq!(left, [1, 3]);
}

#[test]
fn in_a_list_what_follows_a_value_annotates_it_and_is_not_taken() {
    let r = read_plain(
        "evil.example  see https://blog.vendor.example/x\n\
         E3BC3689F01FD431CD2ED368AE91ECEAA7C465C2781FA7B7DC2EC9143A404F79;https://bazaar.example/s\n\
         bad.example reported by abuse@cert.example\n",
    );
    assert_eq!(
        values(&r),
        [
            "evil.example",
            "e3bc3689f01fd431cd2ed368ae91eceaa7c465c2781fa7b7dc2ec9143a404f79",
            "bad.example"
        ]
    );
}

#[test]
fn a_hosts_file_gives_its_names_never_its_sink_addresses() {
    let r = read_plain(
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n255.255.255.255 broadcasthost\n\
         0.0.0.0 0.0.0.0\n0.0.0.0 evil.example # ads\n127.0.0.1\tbad.example tracker.example\n\
         :: evil.example\n",
    );
    assert_eq!(
        values(&r),
        [
            "evil.example",
            "bad.example",
            "tracker.example",
            "evil.example"
        ]
    );
    assert_eq!(lines_of_found(&r), [5, 6, 6, 7]);
    let left: Vec<(usize, &LeftReason)> = r.left.iter().map(|l| (l.line, &l.reason)).collect();
    assert_eq!(
        left,
        [1, 2, 3, 4].map(|n| (n, &LeftReason::HostsLineWithoutName))
    );
    assert_eq!(r.found.len(), 4);
    // A hosts file's own lines name no indicator, not even their address.
    let header = read_plain(
        "127.0.0.1 localhost.localdomain\nff02::1 ip6-allnodes\nfe80::1%lo0 localhost\n\
         0.0.0.0 evil.example\n",
    );
    assert_eq!(values(&header), ["evil.example"]);
    assert_eq!(header.left.len(), 3);
    // A sink address alone on its line is a value like any other.
    assert_eq!(values(&read_plain("0.0.0.0\n")), ["0.0.0.0"]);
    // One line of many names: each once, and at most as many as a line of prose gives.
    let names: Vec<String> = (0..3 * MAX_PROSE_WORDS)
        .map(|i| format!("n{}.example", i % (2 * MAX_PROSE_WORDS)))
        .collect();
    let many = read_plain(&format!("0.0.0.0 {}\n", names.join(" ")));
    assert_eq!(many.found.len(), MAX_PROSE_WORDS);
    assert_eq!(many.found[1].indicator.value(), "n1.example");
    let twice = read_plain("0.0.0.0 a.example b.example a.example\n");
    assert_eq!(values(&twice), ["a.example", "b.example"]);
}

#[test]
fn plain_text_odd_input_is_left_out_not_a_panic() {
    let long = "a".repeat(1 << 20);
    let nul = "evil\0.example";
    let text = format!(
        "\u{feff}evil.example\n{long}\n{nul}\n\u{200b}\u{202e}\n💥💥\r\n\
         \"quoted.example\"\n\u{0}\n"
    );
    let r = read_plain(&text);
    assert_eq!(
        values(&r)[0],
        "evil.example",
        "the BOM is not part of the value"
    );
    assert!(values(&r).contains(&"quoted.example"));
    assert_eq!(r.found.len() + r.left.len(), r.lines);
    let long_left = r.left.iter().find(|l| l.line == 2);
    assert!(
        matches!(
            long_left.map(|l| &l.reason),
            Some(LeftReason::NotAnIndicator(NormalizeError::TooLong { .. }))
        ),
        "{long_left:?}"
    );
    assert!(r.left.iter().any(|l| l.line == 3), "NUL in a domain");
}

#[test]
fn empty_and_comment_only_texts_read_nothing() {
    for text in ["", "\n\n", "# a\n   # b\n", "\u{feff}", "\r\n"] {
        for r in [read_plain(text), read_csv(text)] {
            assert_eq!(r, TextRead::default(), "{text:?}");
        }
    }
}

#[test]
fn csv_cells_honour_quotes_separators_and_empty_cells() {
    assert_eq!(csv_cells(r#"a,"b,c","d""e""#), ["a", "b,c", "d\"e"]);
    assert_eq!(csv_cells("a;b\tc"), ["a", "b", "c"]);
    assert_eq!(csv_cells(",,"), ["", "", ""]);
    assert_eq!(csv_cells(""), [""]);
    assert_eq!(csv_cells(r#""unclosed,still one"#), ["unclosed,still one"]);
    assert_eq!(csv_cells(r#""""#), [""]);
}

#[test]
fn csv_cells_that_are_indicators_count_and_the_header_is_no_error() {
    let r = read_csv("domain,note\nevil.example,\"c2, seen\"\nno,thing\n");
    assert_eq!(values(&r), ["evil.example"]);
    assert_eq!((r.found[0].line, r.found[0].column), (2, Some(1)));
    assert_eq!(r.header, Some(1));
    assert_eq!(r.lines, 3);
    assert_eq!(r.left.len(), 1);
    assert_eq!(r.left[0].line, 3);
    assert_eq!(r.left[0].text, "no,thing");
    assert_eq!(r.left[0].reason, LeftReason::NoIndicatorInRow);
    assert_eq!(
        r.left[0].reason.summary(),
        "CSV row with no valid indicator in any cell"
    );
}

#[test]
fn a_csv_row_gives_every_indicator_cell_with_its_column() {
    let r = read_csv(
        "\u{feff}type,value,hash\n\
         domain,\"evil[.]example\",,D41D8CD98F00B204E9800998ECF8427E\n\
         # comment\n\
         ,,,\n\
         ip;203.0.113.7\t\"hxxp://bad[.]example/\"\"q\"\"\"\n",
    );
    let got: Vec<(usize, Option<usize>, &str)> = r
        .found
        .iter()
        .map(|f| (f.line, f.column, f.indicator.value()))
        .collect();
    assert_eq!(
        got,
        [
            (2, Some(2), "evil.example"),
            (2, Some(4), "d41d8cd98f00b204e9800998ecf8427e"),
            (5, Some(2), "203.0.113.7"),
            (5, Some(3), "http://bad.example/%22q%22"),
        ]
    );
    assert_eq!(r.header, Some(1));
    assert_eq!(r.lines, 4);
    assert_eq!(r.left.iter().map(|l| l.line).collect::<Vec<_>>(), [4]);
}

#[test]
fn csv_after_a_leading_comment_has_its_header_on_the_first_row() {
    // The first row after the comments a tool wrote is the header; a row with no indicator
    // later is left out.
    let r = read_csv("# exported\nvalue,note\nnothing,here\n");
    assert_eq!(r.header, Some(2));
    assert_eq!(r.left.len(), 1);
    assert_eq!(r.left[0].line, 3);
    // Its columns count: a RED row is RED, a revoked one is left out, even when a header
    // cell reads as a value.
    let r = read_csv(
        "# exported by a SIEM\n\
         type,dst.ip,origin,tlp,revoked\n\
         domain,evil.example,ORG,RED,false\n\
         domain,old.example,ORG,GREEN,true\n",
    );
    assert_eq!(r.header, Some(2));
    assert_eq!(values(&r), ["evil.example"]);
    assert_eq!(r.found[0].tlp, Some(Tlp::Red));
    assert_eq!(r.left.len(), 1);
    assert_eq!(r.left[0].reason, LeftReason::RevokedInRow);
    // A first row naming such a column but holding an address is data, not a header.
    let r = read_csv("198.51.100.7,revoked\n203.0.113.9,active\n");
    assert_eq!(r.header, None);
    assert_eq!(values(&r), ["198.51.100.7", "203.0.113.9"]);
    // Under a commented header, a first row with no value is a row like the others: the
    // header's columns stay.
    let r = read_csv(
        "# url,tlp,urlhaus_link\nnothing,RED,https://urlhaus.abuse.ch/url/1/\n\
         http://bad.example/x,RED,https://urlhaus.abuse.ch/url/2/\n",
    );
    assert_eq!(r.header, None);
    assert_eq!(values(&r), ["http://bad.example/x"]);
    assert_eq!(r.found[0].tlp, Some(Tlp::Red));
    assert_eq!(r.left.len(), 1);
    // Under a comment that merely reads like a header, a first row naming a TLP column is the
    // header.
    let r = read_csv(
        "# Bad URLs, updated hourly, do not redistribute\nurl,tlp,reference_link\n\
         http://bad.example/x,RED,https://feed.example/1\n",
    );
    assert_eq!(r.header, Some(2));
    assert_eq!(values(&r), ["http://bad.example/x"]);
    assert_eq!(r.found[0].tlp, Some(Tlp::Red));
    // Any column naming TLP holds it, however it is spelt.
    for name in ["tlp_marking", "TLP Label", "share-tlp"] {
        let r = read_csv(&format!(
            "indicator,{name}
evil.example,TLP:RED
"
        ));
        assert_eq!(values(&r), ["evil.example"], "{name}");
        assert_eq!(r.found[0].tlp, Some(Tlp::Red), "{name}");
    }
}

#[test]
fn csv_odd_input_is_left_out_not_a_panic() {
    let long = format!("\"{}", ",".repeat(1 << 18));
    let text = format!("h\n{long}\n\0,\u{0}evil.example\n\"\"\"\n💥;💥\n");
    let r = read_csv(&text);
    assert_eq!(r.header, Some(1));
    let mut accounted: Vec<usize> = r.found.iter().map(|f| f.line).collect();
    accounted.extend(r.left.iter().map(|l| l.line));
    accounted.extend(r.header);
    accounted.sort_unstable();
    accounted.dedup();
    assert_eq!(accounted.len(), r.lines);
}

#[test]
fn a_feeds_links_notes_and_reporters_are_not_read_and_its_commented_header_counts() {
    // As URLhaus writes its dump: the header commented out, each row linking to the feed's own
    // page for the URL, which is no indicator of anything.
    let r = read_csv(
        "################\n\
         # abuse.ch URLhaus Database Dump\n\
         #\n\
         # id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\
         \"3905439\",\"2026-08-18 16:17:08\",\"http://120.84.215.27:44835/i\",\"online\",\"2026-08-18\",\"malware_download\",\"None\",\"https://urlhaus.abuse.ch/url/3905439/\",\"evil.example\"\n",
    );
    assert_eq!(values(&r), ["http://120.84.215.27:44835/i"]);
    assert_eq!(r.found[0].column, Some(3));
    assert!(r.left.is_empty(), "{:?}", r.left);
}

#[test]
fn a_row_whose_type_is_not_shared_is_left_out_with_its_type() {
    let r = read_csv(
        "\u{feff}Type,Value,Note,Seen in\n\
         Filename,crdss.exe,Backdoor dropper file name,Ukraine\n\
         SHA1,80fb042b4a563efe058a71a647ea949148a56c7c,Backdoor dropper hash,Estonia\n",
    );
    assert_eq!(values(&r), ["80fb042b4a563efe058a71a647ea949148a56c7c"]);
    assert_eq!(r.header, Some(1));
    assert_eq!(r.left.len(), 1);
    assert_eq!(r.left[0].line, 2);
    assert_eq!(
        r.left[0].reason,
        LeftReason::TypeNotShared("Filename".into())
    );
    assert_eq!(
        r.left[0].reason.summary(),
        "CSV row of type \"filename\", not a kind of indicator the mesh shares"
    );
    // Without a header naming them, every cell is read as before, and a file name is none.
    let plain = read_csv("evil.example,crdss.exe\n");
    assert_eq!(values(&plain), ["evil.example"]);
}

#[test]
fn a_row_of_an_unshared_type_still_gives_its_hashes_and_nothing_else() {
    // As Volexity's IOC sheets type a sample's row (interop-samples/csv).
    let sha256 = "2ffe1e4f4df34e1aca3b8a8e7c06b6b6a1b0e1a7dfb7f4e3e2c1d0b9a8f7e6d5";
    let r = read_csv(&format!(
        "value,type,notes\n\
         {sha256},file,GOVERSHELL Sample dropped by evil.example\n\
         sample.docx,file,lure\n"
    ));
    assert_eq!(values(&r), [sha256]);
    assert_eq!(r.left.len(), 1);
    assert_eq!(r.left[0].reason, LeftReason::TypeNotShared("file".into()));
    // An import hash or a JA3 fingerprint reads as an MD5, and is none.
    let imphash = read_csv("value,type\nf34d5f2d4577ed6d9ceec516c1f5a744,imphash\ne7d705a3286e19ea42f587b344ee6865,ja3\n");
    assert!(imphash.found.is_empty(), "{:?}", imphash.found);
    assert_eq!(imphash.left.len(), 2);
    // An Android package column names no domain.
    let apk = read_csv(
        "sha256,apk_package_name\n{sha256},com.android.henbox\n"
            .replace("{sha256}", sha256)
            .as_str(),
    );
    assert_eq!(values(&apk), [sha256]);
}

#[test]
fn columns_a_header_names_for_values_are_still_read() {
    let r = read_csv("timestamp,source_ip,comment\n2024-01-02,203.0.113.7,phish@evil.example\n");
    assert_eq!(values(&r), ["203.0.113.7", "phish@evil.example"]);
}

#[test]
fn a_mesh_csv_export_reads_back_with_its_tlp_and_without_revoked_rows() {
    // As `intelmesh export --format csv` writes it: a formula-led value guarded with `'`.
    let r = read_csv(
        "type,value,origin,tlp,confidence,revoked,valid_from_unix_ms,valid_until_unix_ms,tags\n\
         domain,evil.example,AU-AFP,RED,80,false,0,,c2\n\
         domain,gone.example,AU-AFP,GREEN,80,true,0,,\n\
         email,\"'=x@evil.example\",AU-AFP,AMBER+STRICT,80,false,0,,\n\
         ipv4,198.51.100.7,AU-AFP,,80,false,0,,\n\
         domain,odd.example,AU-AFP,RED-restricted,80,false,0,,\n\
         domain,spaced.example,AU-AFP,TLP: GREEN,80,false,0,,\n",
    );
    let got: Vec<(&str, Option<Tlp>)> = r
        .found
        .iter()
        .map(|f| (f.indicator.value(), f.tlp))
        .collect();
    assert_eq!(
        got,
        [
            ("evil.example", Some(Tlp::Red)),
            ("=x@evil.example", Some(Tlp::AmberStrict)),
            ("198.51.100.7", None),
        ]
    );
    let left: Vec<(usize, LeftReason)> =
        r.left.iter().map(|l| (l.line, l.reason.clone())).collect();
    // A TLP this reader cannot read is no reason to share the value at the default.
    assert_eq!(
        left,
        [
            (3, LeftReason::RevokedInRow),
            (6, LeftReason::UnreadableTlp("RED-restricted".into())),
            (7, LeftReason::UnreadableTlp("TLP: GREEN".into()))
        ]
    );
    // Their values are named, so the same value elsewhere is not shared wider either.
    let withheld: Vec<&str> = r.withheld.iter().map(|i| i.value()).collect();
    assert_eq!(withheld, ["odd.example", "spaced.example"]);
    // Confidence and validity come back as the export gave them.
    let r = read_csv(
        "type,value,origin,tlp,confidence,revoked,valid_from_unix_ms,valid_until_unix_ms,tags
         domain,evil.example,AU-AFP,RED,80,false,1700000000000,1800000000000,c2
         domain,odd.example,AU-AFP,RED,180,false,,later,
",
    );
    let facts: Vec<RowFacts> = r.found.iter().map(|f| f.facts).collect();
    assert_eq!(
        facts,
        [
            RowFacts {
                confidence: Some(80),
                valid_from_unix_ms: Some(1_700_000_000_000),
                valid_until_unix_ms: Some(1_800_000_000_000),
            },
            RowFacts::default(),
        ]
    );
    // Other spellings: a timestamp, Unix seconds.
    let r = read_csv(
        "indicator,confidence,valid_until,valid_from
evil.example,55,2026-12-31T00:00:00Z,1700000000
",
    );
    assert_eq!(
        r.found[0].facts,
        RowFacts {
            confidence: Some(55),
            valid_from_unix_ms: Some(1_700_000_000_000),
            valid_until_unix_ms: Some(1_798_675_200_000),
        }
    );
}

/// A row of separators alone is cut at the most cells a row is split into: the rest is its
/// last cell, not a cell per byte.
#[test]
fn a_row_is_split_into_a_bounded_number_of_cells() {
    let cells = csv_cells(&",".repeat(100_000));
    assert_eq!(cells.len(), MAX_CSV_CELLS);
    assert_eq!(
        cells.last().map(String::len),
        Some(100_000 - (MAX_CSV_CELLS - 1))
    );
    assert_eq!(csv_cells("a,b;c"), ["a", "b", "c"]);
}

#[test]
fn lines_left_out_past_the_first_thousand_are_counted_not_kept() {
    let text = "a\n".repeat(MAX_LEFT_KEPT + 4_000);
    for r in [read_plain(&text), read_csv(&format!("value\n{text}"))] {
        assert_eq!(r.left.len(), MAX_LEFT_KEPT);
        assert_eq!(r.left_count(), MAX_LEFT_KEPT + 4_000);
        assert_eq!(r.left_beyond.len(), 1, "{:?}", r.left_beyond);
        assert_eq!(r.left_beyond.values().sum::<usize>(), 4_000);
    }
}

#[test]
fn prose_takes_every_defanged_form_a_list_line_takes() {
    let r = read_plain(
        "The actor used bad{dot}example and other{.}example for staging.\n\
         Nothing else was named in this paragraph at all.\n\
         Nor in this one, which is prose as well.\n",
    );
    assert_eq!(values(&r), ["bad.example", "other.example"]);
}

#[test]
fn a_file_name_is_no_domain_in_a_list_in_prose_or_in_csv() {
    // As Unit 42's Netwalker list writes a command line among its values.
    let r = read_plain(
        "evil.example\n\
         svchost.exe\n\
         Vssadmin.exe delete shadows/all/quiet\n\
         other.example\n",
    );
    assert_eq!(values(&r), ["evil.example", "other.example"]);
    let reasons: Vec<String> = r.left.iter().map(|l| l.reason.summary()).collect();
    assert_eq!(reasons[0], "a file name, not a domain", "{reasons:?}");
    assert_eq!(r.left.len(), 2, "{reasons:?}");
    // An extension that is also a TLD (`.zip`) stays a domain.
    let r = read_csv("value,file\nbad.zip,invoice.docm\n");
    assert_eq!(values(&r), ["bad.zip"]);
}

#[test]
fn a_quoted_cell_may_span_lines_and_a_stray_quote_spoils_only_its_line() {
    // As corpus/lists/unit42/dearjoohn_dearjoohn_iocs.csv writes a cell of two file names.
    let r = read_csv(
        "SHA256,Filename,URL\n\
         f1e2bcea0a6b2a4a2e8f7c6d5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a494a5,\"crash list.docx\n\
         second name.docx\t\",http://188.241.58.170/live/owa/office.dotm\n\
         6ad3eb8b5622145a70bec67b3d14868a1c13864864afd651fe70689c95b1399a,one.docx,http://evil.example/a\n",
    );
    let lines: Vec<(usize, &str)> = r
        .found
        .iter()
        .map(|f| (f.line, f.indicator.value()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                2,
                "f1e2bcea0a6b2a4a2e8f7c6d5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a494a5"
            ),
            (2, "http://188.241.58.170/live/owa/office.dotm"),
            (
                4,
                "6ad3eb8b5622145a70bec67b3d14868a1c13864864afd651fe70689c95b1399a"
            ),
            (4, "http://evil.example/a"),
        ]
    );
    assert!(r.left.is_empty(), "{:?}", r.left);
    // A quote never closed: the rows after it are read as rows.
    let mut text = String::from("evil.example,\"note\n");
    for i in 0..40 {
        text.push_str(&format!("d{i}.example\n"));
    }
    let r = read_csv(&text);
    assert_eq!(r.found.len(), 41);
    // Inch marks are no quotes: every row is its own.
    let r = read_csv("value,notes\na.example,5\" disk\nb.example,ok\nc.example,3\" floppy\n");
    assert_eq!(values(&r), ["a.example", "b.example", "c.example"]);
    // Nor inside a row: the cells after one are cells.
    let r = read_csv("a.example,5\" disk,b.example,domain\n");
    assert_eq!(values(&r), ["a.example", "b.example"]);
    assert_eq!(
        csv_cells("a,5\" disk,\"x, \"\"y\"\"\",z"),
        ["a", "5\" disk", "x, \"y\"", "z"]
    );
}

#[test]
fn a_report_that_defangs_its_indicators_keeps_its_plain_links_as_references() {
    // As ESET's apt_c_60 README opens (corpus/lists/eset/reports).
    let report = "= APT-C-60 - Indicators of Compromise\n\
                  \n\
                  The blog post \"Analysis of two vulnerabilities\" is available at\n\
                  https://www.welivesecurity.com/en/eset-research/analysis/.\n\
                  A patch is provided here:\n\
                  https://github.com/eset/malware-research/blob/master/x.patch\n\
                  github.com\n\
                  == C&C servers\n\
                  - `rammenale[.]com`\n\
                  - `162.222.214[.]48`\n\
                  - `hxxps://g5wcesdfjzne7255.onion.to/`\n\
                  Stage two is fetched from http://198.51.100.23/x.bin as well.\n";
    let r = read_plain(report);
    assert_eq!(
        values(&r),
        [
            "rammenale.com",
            "162.222.214.48",
            "https://g5wcesdfjzne7255.onion.to/",
        ]
    );
    // A plain URL in its prose is a reference too: the line names nothing.
    assert!(r.left.iter().any(|l| l.text.starts_with("Stage two")));
    let references: Vec<&LeftReason> = r
        .left
        .iter()
        .map(|l| &l.reason)
        .filter(|r| matches!(r, LeftReason::Reference(_)))
        .collect();
    assert_eq!(references.len(), 3, "{:?}", r.left);
    // A report that defangs nothing keeps its URLs: there is no telling them apart.
    let plain = read_plain(
        "Stage two is fetched from http://198.51.100.23/x.bin as well.\nSee the blog.\n",
    );
    assert_eq!(values(&plain), ["http://198.51.100.23/x.bin"]);
}
