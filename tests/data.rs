//! Preference files read as the browser streams them: the same rows however the file is cut into
//! chunks, and every refusal naming the line and the byte offset a user can find in an editor.

use webdpo::train::{ImportLimits, PreferenceReader, PreferenceRows, parse_preferences};

fn read(chunks: &[&[u8]], limits: ImportLimits) -> webdpo::Result<PreferenceRows> {
    let mut reader = PreferenceReader::new("f.jsonl", limits);
    for chunk in chunks {
        reader.push(chunk)?;
    }
    reader.finish()
}

fn error(chunks: &[&[u8]], limits: ImportLimits) -> String {
    read(chunks, limits).unwrap_err().to_string()
}

const PAIRS: &str = concat!(
    "{\"prompt\": \"Café?\", \"chosen\": \"Oui ☕\", \"rejected\": \"Non\"}\r\n",
    "\n",
    "{\"prompt\": [{\"role\": \"user\", \"content\": \"😀\"}], ",
    "\"chosen\": [{\"role\": \"assistant\", \"content\": \"a\"}], ",
    "\"rejected\": [{\"role\": \"assistant\", \"content\": \"b\"}]}",
);

#[test]
fn every_cut_into_two_or_three_chunks_reads_the_same_rows() {
    let whole = parse_preferences(PAIRS, "f.jsonl").unwrap();
    assert!(matches!(&whole, PreferenceRows::Pairs(p) if p.len() == 2));
    let bytes = PAIRS.as_bytes();
    // Cuts inside multi-byte characters and between \r and \n included.
    for i in 0..=bytes.len() {
        let rows = read(&[&bytes[..i], &bytes[i..]], ImportLimits::BROWSER).unwrap();
        assert_eq!(rows, whole, "cut at {i}");
        for j in (i..=bytes.len()).step_by(7) {
            let rows = read(
                &[&bytes[..i], &bytes[i..j], &bytes[j..]],
                ImportLimits::NONE,
            );
            assert_eq!(rows.unwrap(), whole, "cut at {i} and {j}");
        }
    }
}

#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_offset() {
    let good = "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n";
    // Latin-1 "é" (0xE9) in line 2, at its byte 15.
    let mut file = good.as_bytes().to_vec();
    file.extend_from_slice(b"{\"prompt\": \"caf\xE9\", \"chosen\": \"b\", \"rejected\": \"c\"}\n");
    let at = good.len() + 15;
    assert_eq!(file[at], 0xE9);
    for cut in [0, at, at + 1, file.len()] {
        let e = error(&[&file[..cut], &file[cut..]], ImportLimits::BROWSER);
        assert_eq!(
            e,
            format!("f.jsonl:2: byte {at}: not UTF-8; save the file as UTF-8")
        );
    }
}

#[test]
fn a_utf8_byte_order_mark_is_skipped_and_utf16_refused() {
    let row = "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n";
    let bom = [b"\xEF\xBB\xBF".as_slice(), row.as_bytes()].concat();
    let rows = read(&[&bom], ImportLimits::BROWSER).unwrap();
    assert!(matches!(rows, PreferenceRows::Ratings(r) if r.len() == 1 && r[0].label));
    // Offsets count the mark: serde_json stops at the closing brace (byte 12 after the mark).
    let bad = [b"\xEF\xBB\xBF".as_slice(), b"{\"prompt\": 1}"].concat();
    let e = error(&[&bad], ImportLimits::BROWSER);
    assert!(
        e.starts_with("f.jsonl:1: byte 15: not a {\"prompt\",\"completion\""),
        "{e}"
    );
    let utf16 = b"\xFF\xFE{\x00";
    let e = error(&[utf16], ImportLimits::BROWSER);
    assert_eq!(e, "f.jsonl:1: byte 0: the file is UTF-16; save it as UTF-8");
}

#[test]
fn a_bad_row_names_its_line_and_byte() {
    let file = concat!(
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n",
        "{\"prompt\": \"a\", \"chosen\": 7, \"rejected\": \"c\"}\n",
    );
    let e = error(&[file.as_bytes()], ImportLimits::BROWSER);
    // The second line starts at byte 48; serde_json stops at the 7, 26 bytes into it.
    assert!(
        e.starts_with("f.jsonl:2: byte 74: not a {\"prompt\",\"chosen\",\"rejected\"}"),
        "{e}"
    );
    let e = error(&[b"\n \n"], ImportLimits::BROWSER);
    assert_eq!(
        e,
        "f.jsonl:0: no preference pairs or rated responses in the file"
    );
}

#[test]
fn a_file_past_a_cap_is_refused_saying_which() {
    let row = "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n";
    let limits = ImportLimits {
        max_bytes: 1000,
        max_rows: 3,
        max_line_bytes: 60,
    };
    let four = row.repeat(4);
    let e = error(&[four.as_bytes()], limits);
    assert_eq!(
        e,
        "f.jsonl:4: byte 144: more than 3 rows, the most one import takes; split the file"
    );
    // A long line is refused before it ends (as its bytes arrive).
    let long = format!("{row}{{\"prompt\": \"{}", "x".repeat(100));
    let e = error(&[long.as_bytes()], limits);
    assert!(
        e.starts_with("f.jsonl:2: byte 48: the line is longer than"),
        "{e}"
    );
    let big = row.repeat(21);
    let e = error(&[big.as_bytes()], limits);
    assert!(e.contains("the file is larger than"), "{e}");
    // The app's caps, as the page states them.
    let app = ImportLimits::BROWSER;
    assert_eq!(
        (app.max_bytes, app.max_rows, app.max_line_bytes),
        (256 << 20, 100_000, 1 << 20)
    );
}
