// The auditor's pages: times in the browser's own zone when chosen, and "Verify this entry"
// done here, in the browser, so that the auditor need not take the server's word for it:
// the leaf hash of the entry's bytes, its audit path up to the root (RFC 9162 2.1.3.2), and the
// checkpoint's Ed25519 signature (C2SP signed note) with the published keys, all with WebCrypto.
// Without scripts the same button asks the server (?verify=1), which says so (docs/AUDIT.md).
(function () {
  "use strict";

  function pad(n) { return String(n).padStart(2, "0"); }

  // `2026-12-07 11:36:45 UTC+01:00`: the same shape as the server's (dashboard/display_zone.py).
  function browserMoment(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return null;
    var offset = -d.getTimezoneOffset();
    var zone = offset === 0 ? "UTC" :
      "UTC" + (offset > 0 ? "+" : "-") + pad(Math.floor(Math.abs(offset) / 60)) + ":" + pad(Math.abs(offset) % 60);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone;
  }
  document.querySelectorAll("time[data-moment=browser]").forEach(function (el) {
    var text = browserMoment(el.getAttribute("datetime"));
    if (text) { el.title = el.textContent; el.textContent = text; }
  });

  // --- verify this entry ---------------------------------------------------------------
  var enc = new TextEncoder();

  function fromBase64(text) {
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  function concat() {
    var parts = Array.prototype.slice.call(arguments);
    var out = new Uint8Array(parts.reduce(function (n, p) { return n + p.length; }, 0));
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
  function leafHash(bytes) { return sha256(concat(new Uint8Array([0]), bytes)); }
  function nodeHash(left, right) { return sha256(concat(new Uint8Array([1]), left, right)); }

  // RFC 9162 2.1.3.2, as audit_app/chain.py verify_inclusion; BigInt, as sizes may pass 2^53.
  async function rootFromPath(index, size, leaf, path) {
    var fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
    if (fn > sn) throw new Error("the entry is outside the signed tree");
    for (var i = 0; i < path.length; i++) {
      if (sn === 0n) throw new Error("the audit path is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(path[i], r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, path[i]);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("the audit path is too short");
    return r;
  }

  // A C2SP signed note: the text up to the blank line, then "— <name> <base64(key id ‖ signature)>".
  function parseNote(note) {
    var split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint has no signature block");
    var text = note.slice(0, split + 1);
    var lines = text.slice(0, -1).split("\n");
    var signatures = note.slice(split + 2).split("\n").filter(Boolean).map(function (line) {
      if (line.indexOf("\u2014 ") !== 0) throw new Error("the checkpoint has a malformed signature line");
      var rest = line.slice(2), space = rest.indexOf(" ");
      var raw = fromBase64(rest.slice(space + 1));
      return { name: rest.slice(0, space), keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text: text, origin: lines[0], size: lines[1], root: fromBase64(lines[2]), signatures: signatures };
  }

  // The signatures that verify with a published key whose id is its own (name, 0x01, key).
  async function verifiedSigners(note, published) {
    var names = [];
    for (var i = 0; i < note.signatures.length; i++) {
      var sig = note.signatures[i];
      for (var k = 0; k < published.keys.length; k++) {
        var key = published.keys[k];
        if (key.name !== sig.name || key.key_id !== hex(sig.keyId)) continue;
        var raw = fromBase64(key.public_key);
        var id = (await sha256(concat(enc.encode(key.name + "\n"), new Uint8Array([1]), raw))).slice(0, 4);
        if (!equal(id, sig.keyId)) throw new Error("published key " + key.name + " does not match its id");
        var imported = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
        if (!(await crypto.subtle.verify({ name: "Ed25519" }, imported, sig.signature, enc.encode(note.text)))) {
          throw new Error("the signature of " + key.name + " on the checkpoint does not verify");
        }
        names.push(key.name);
      }
    }
    return names;
  }

  // Pushes each check it passed onto `steps`; throws at the first that fails.
  async function verify(box, steps) {
    var seq = box.getAttribute("data-seq");
    var bytes = fromBase64(box.getAttribute("data-leaf-bytes"));
    var leaf = await leafHash(bytes);
    if (hex(leaf) !== box.getAttribute("data-leaf-hash")) {
      throw new Error("this entry's bytes hash to " + hex(leaf) + ", not to its leaf hash: the entry was changed");
    }
    steps.push("The entry's bytes hash to its leaf hash " + hex(leaf) + ".");
    var note = parseNote(box.getAttribute("data-note"));
    var response = await fetch(box.getAttribute("data-keys"), { credentials: "same-origin" });
    if (!response.ok) throw new Error("the published keys could not be read (HTTP " + response.status + ")");
    var published = await response.json();
    if (note.origin !== published.origin) throw new Error("the checkpoint is for " + note.origin + ", not " + published.origin);
    var signers = await verifiedSigners(note, published);
    if (!signers.length) throw new Error("no published key signed the checkpoint");
    steps.push("The checkpoint (" + note.size + " entries) is signed by " + signers.join(", ") + ", a published key.");
    if (note.size !== box.getAttribute("data-tree-size")) throw new Error("the proof is for another tree size than the checkpoint's");
    var path = (box.getAttribute("data-proof") || "").split(" ").filter(Boolean).map(fromBase64);
    var root = await rootFromPath(seq, note.size, leaf, path);
    if (!equal(root, note.root)) throw new Error("the audit path leads to " + hex(root) + ", not to the signed root " + hex(note.root));
    steps.push("Its audit path of " + path.length + " hashes leads from the leaf to the signed root " + hex(note.root) + ".");
  }

  function report(result, ok, headline, steps) {
    result.textContent = "";
    var p = document.createElement("p");
    p.className = "notice " + (ok ? "success" : "error");
    var strong = document.createElement("strong");
    strong.textContent = headline;
    p.appendChild(strong);
    p.appendChild(document.createTextNode(" Checked in your browser (WebCrypto SHA-256 and Ed25519), not by the server."));
    result.appendChild(p);
    var list = document.createElement("ol");
    list.className = "checks";
    steps.forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = (s.ok ? "\u2713 " : "\u2717 ") + s.text;
      list.appendChild(li);
    });
    result.appendChild(list);
  }

  document.querySelectorAll("[data-verify]").forEach(function (box) {
    var form = box.querySelector("form");
    var result = box.querySelector(".verify-result");
    if (!form || !result || !(window.crypto && crypto.subtle)) return; // then the server checks
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      result.textContent = "Checking…";
      var steps = [];
      var passed = function () { return steps.map(function (s) { return { ok: true, text: s }; }); };
      verify(box, steps).then(function () {
        report(result, true, "Verified: this entry is in the signed audit trail, unchanged.", passed());
      }, function (error) {
        if (error && error.name === "NotSupportedError") {  // no Ed25519 in this browser's WebCrypto
          result.textContent = "This browser cannot check Ed25519 signatures: asking the server instead…";
          form.submit();
          return;
        }
        report(result, false, "Not verified: " + error.message + ".",
          passed().concat([{ ok: false, text: error.message }]));
      });
    });
  });
})();
