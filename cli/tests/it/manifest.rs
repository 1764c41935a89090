//! Signed manifests: `add --sign` and `manifest sign|verify|trust`. A manifest verifies when
//! its publisher's key signed exactly its fields and every block of its DAG is there and
//! intact; tampered metadata, a swapped root, a wrong key and a truncated signature are each
//! caught (exit 3), as is data that is missing (exit 4). Through a daemon, missing blocks are
//! fetched from a peer first.

use std::path::Path;
use std::process::Output;

use crate::cairn;
use crate::daemon::Daemon;

fn run(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn verify(repo: &Path, cid: &str) -> (i32, String) {
    let out: Output = cairn().arg("--repo").arg(repo).args(["manifest", "verify", cid]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Stores `text` as a DAG-JSON block; its CID.
fn put_json(repo: &Path, text: &str) -> String {
    let out = cairn()
        .arg("--repo")
        .arg(repo)
        .args(["block", "put", "--cid-codec", "dag-json"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn block_text(repo: &Path, cid: &str) -> String {
    String::from_utf8(cairn().arg("--repo").arg(repo).args(["block", "get", cid]).output().unwrap().stdout).unwrap()
}

#[test]
fn manifests_sign_verify_and_catch_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&a, &["init", "--profile", "test"]);
    run(&b, &["init", "--profile", "test"]);
    let file = tmp.path().join("report.txt");
    std::fs::write(&file, "the annual report\n".repeat(30_000)).unwrap();
    let out = run(&a, &["add", "--sign", "--title", "Annual report", "--license", "CC-BY-4.0", file.to_str().unwrap()]);
    let mut lines = out.lines();
    let root = lines.next().unwrap().split_whitespace().nth(1).unwrap().to_owned();
    let signed: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(signed[0], "signed", "{out}");
    assert_eq!(signed[2], root, "{out}");
    let manifest = signed[1].to_owned();
    assert!(manifest.starts_with("bagu"), "a DAG-JSON CIDv1: {manifest}");
    // Pinned together with its DAG.
    assert!(run(&a, &["pin", "ls", "--type", "recursive"]).contains(&manifest));

    let peer_a: serde_json::Value = serde_json::from_str(&run(&a, &["id"])).unwrap();
    let peer_a = peer_a["ID"].as_str().unwrap().to_owned();
    let (code, text) = verify(&a, &manifest);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("signature: valid") && text.contains("(not trusted)") && text.contains(&peer_a), "{text}");
    assert!(text.contains("\"report.txt\""), "the manifest is named after the file: {text}");
    run(&a, &["manifest", "trust", &peer_a, "--name", "the archive"]);
    let (code, text) = verify(&a, &manifest);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("trusted as \"the archive\""), "{text}");
    assert!(run(&a, &["manifest", "trusted"]).contains(&peer_a));

    // Tampering, each stored as a block of its own (the originals stay as they are).
    let original = block_text(&a, &manifest);
    assert!(original.contains("\"title\":\"Annual report\""), "{original}");
    let other = run(&a, &["add", "-Q", "--cid-version", "1", file.to_str().unwrap()]).trim().to_owned();
    let sig_at = original.find("\"signature\":{\"/\":{\"bytes\":\"").unwrap() + 27;
    let sig_end = sig_at + original[sig_at..].find('"').unwrap();
    let cases = [
        ("tampered metadata", original.replace("Annual report", "Annual rep0rt")),
        ("swapped root", original.replace(&root, &other)),
        ("truncated signature", format!("{}{}", &original[..sig_at + 40], &original[sig_end..])),
    ];
    for (what, text) in cases {
        assert_ne!(text, original, "{what}: the edit did nothing");
        let cid = put_json(&a, &text);
        let (code, out) = verify(&a, &cid);
        assert_eq!(code, 3, "{what}: {out}");
        assert!(out.contains("INVALID"), "{what}: {out}");
    }
    // A wrong key: b signs the same content; a's manifest with b's key, or b's with a's ID.
    let b_file = tmp.path().join("b-report.txt");
    std::fs::write(&b_file, "b's own report\n").unwrap();
    let b_out = run(&b, &["add", "--sign", "--title", "Annual report", b_file.to_str().unwrap()]);
    let b_manifest = b_out.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap().to_owned();
    let b_text = block_text(&b, &b_manifest);
    let key_of = |t: &str| {
        let at = t.find("\"key\":{\"/\":{\"bytes\":\"").unwrap() + 21;
        t[at..at + t[at..].find('"').unwrap()].to_owned()
    };
    let with_b_key = original.replace(&key_of(&original), &key_of(&b_text));
    let peer_b: serde_json::Value = serde_json::from_str(&run(&b, &["id"])).unwrap();
    let claims_a =
        b_text.replace(peer_b["ID"].as_str().unwrap(), &peer_a).replace(&key_of(&b_text), &key_of(&original));
    for (what, text) in [("a's manifest with b's key", with_b_key), ("b's signature claiming a", claims_a)] {
        let cid = put_json(&a, &text);
        let (code, out) = verify(&a, &cid);
        assert_eq!(code, 3, "{what}: {out}");
    }
    // Not a manifest at all.
    let (code, out) = verify(&a, &root);
    assert_eq!(code, 3, "{out}");

    // The manifest alone, without its DAG: the signature holds, the data is missing.
    let lone = put_json(&b, &original);
    assert_eq!(lone, manifest);
    let (code, out) = verify(&b, &lone);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("signature: valid") && out.contains("is missing"), "{out}");

    // A signed tree, for the gateway.
    let site = tmp.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("page.txt"), "signed page\n").unwrap();
    let site_out = run(&a, &["add", "-r", "--sign", site.to_str().unwrap()]);
    let site_manifest = site_out.lines().last().unwrap().split_whitespace().nth(1).unwrap().to_owned();

    // Through b's daemon, connected to a's, the missing blocks are fetched, and it verifies.
    let da = Daemon::start(&a);
    // a's gateway serves the manifest's content under its CID, saying who signed it.
    let gateway = crate::daemon::wait_for(&a.join("gateway"));
    let page = String::from_utf8(crate::daemon::http_get_bytes(&gateway, &format!("/ipfs/{site_manifest}/"))).unwrap();
    assert!(page.contains(" 200 "), "{page}");
    let header = format!("x-cairn-signed-by: {peer_a}; signature=valid; trusted=\"the archive\"");
    assert!(page.to_ascii_lowercase().contains(&header.to_ascii_lowercase()), "{page}");
    assert!(
        page.contains(&format!("Signed by {peer_a} (trusted: the archive)")) && page.contains("page.txt"),
        "{page}"
    );
    let file =
        String::from_utf8(crate::daemon::http_get_bytes(&gateway, &format!("/ipfs/{site_manifest}/page.txt"))).unwrap();
    assert!(file.ends_with("\r\n\r\nsigned page\n"), "{file}");
    let _db = Daemon::start(&b);
    run(&b, &["swarm", "connect", &da.swarm_addr()]);
    let (code, out) = verify(&b, &lone);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("blocks intact"), "{out}");
}
