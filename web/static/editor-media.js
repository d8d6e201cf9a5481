/* Photos in the editor: the "Aggiungi foto" button (a file input), and photos dragged or pasted into
   the text. Each is uploaded to POST /api/media (upload progress shown, failures explained), then
   `![name](/media/…)` is inserted at the cursor with the name selected, so the editor types the
   alternative text at once. Publishing a photo whose alternative text is empty or still the file name
   shows a warning (accessibility) but never stops a breaking update. Works beside editor.js: same
   config block and sessionStorage token; it tells editor.js about the new text with an input event. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("ed-config").textContent);
  const L = config.labels;
  const TOKEN_KEY = "liveblog.token"; // where editor.js keeps the signed-in token
  const ACCEPTED = new Set(["image/jpeg", "image/png", "image/webp", "image/gif"]);
  const $ = (id) => document.getElementById(id);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
  const body = $("ed-body");
  const progress = $("ed-upload-progress");
  const status = $("ed-upload-status");
  const error = $("ed-upload-error");
  const warning = $("ed-alt-warning");
  const fileNames = new Set(); // default alt texts we inserted: the files' names
  let queue = Promise.resolve();

  function say(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  const baseName = (name) => name.replace(/\.[A-Za-z0-9]+$/, "").replace(/[[\]\\]/g, "") || "foto";

  function explain(name, code, detail) {
    if (code === 0) return fill(L.upload_network, { name });
    if (code === 413) return fill(L.upload_too_large, { name, max: config.max_media_mb });
    if (code === 415) return fill(L.upload_not_image, { name });
    if (code === 422) return fill(L.upload_unprocessable, { name, detail });
    if (code === 401 || code === 403) return L.upload_auth;
    return fill(L.upload_failed, { name, status: code, detail });
  }

  /** POST the file as the raw body; resolves with the answer, rejects with {code, detail}. */
  function send(file) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", config.media);
      request.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`);
      request.setRequestHeader("Content-Type", ACCEPTED.has(file.type) ? file.type : "application/octet-stream");
      request.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const percent = Math.round((100 * event.loaded) / event.total);
        progress.value = percent;
        say(status, fill(L.uploading, { name: file.name, percent }));
      });
      request.addEventListener("load", () => {
        let answer = null;
        try { answer = JSON.parse(request.responseText); } catch { /* not JSON: explained below */ }
        if (request.status === 201 && answer) resolve(answer);
        else reject({ code: request.status, detail: (answer && answer.detail) || request.statusText });
      });
      request.addEventListener("error", () => reject({ code: 0, detail: "" }));
      request.send(file);
    });
  }

  /** Puts `![alt](path)` where the cursor is (on a line of its own) and selects `alt`. */
  function insert(alt, path) {
    const start = body.selectionStart;
    const end = body.selectionEnd;
    const before = body.value.slice(0, start);
    const after = body.value.slice(end);
    const lead = before && !before.endsWith("\n") ? "\n\n" : "";
    const trail = after && !after.startsWith("\n") ? "\n\n" : "";
    const text = `${lead}![${alt}](${path})${trail}`;
    body.value = before + text + after;
    const altStart = start + lead.length + 2;
    body.focus();
    body.setSelectionRange(altStart, altStart + alt.length);
    body.dispatchEvent(new Event("input", { bubbles: true })); // editor.js: preview and draft
  }

  async function upload(file) {
    const name = file.name || "foto";
    say(error, "");
    progress.value = 0;
    progress.hidden = false;
    say(status, fill(L.uploading, { name, percent: 0 }));
    try {
      const answer = await send(file);
      const alt = baseName(name);
      fileNames.add(alt);
      insert(alt, new URL(answer.url, window.location.href).pathname);
      say(status, L.uploaded);
    } catch (failure) {
      say(status, "");
      say(error, explain(name, failure.code, failure.detail));
    } finally {
      progress.hidden = true;
    }
  }

  /** One upload at a time, in the order the files came. */
  function uploadAll(files) {
    for (const file of files) queue = queue.then(() => upload(file));
  }

  const imagesOf = (list) => Array.from(list || []).filter((file) => file.type.startsWith("image/") || !file.type);

  $("ed-photo-button").addEventListener("click", () => $("ed-photo").click());
  $("ed-photo").addEventListener("change", (event) => {
    uploadAll(Array.from(event.target.files));
    event.target.value = ""; // the same file may be chosen again
  });
  body.addEventListener("dragover", (event) => {
    if (Array.from(event.dataTransfer?.types || []).includes("Files")) event.preventDefault();
  });
  body.addEventListener("drop", (event) => {
    const files = imagesOf(event.dataTransfer?.files);
    if (!files.length) return;
    event.preventDefault();
    uploadAll(files);
  });
  body.addEventListener("paste", (event) => {
    const files = imagesOf(event.clipboardData?.files);
    if (!files.length) return;
    event.preventDefault();
    uploadAll(files);
  });

  // ---- accessibility warning on publishing ------------------------------------------------------

  const PHOTO = /!\[([^\]]*)\]\(\s*<?([^)\s>]+)/g;
  const looksLikeFileName = (alt) => /\.(jpe?g|png|webp|gif|heic)$/i.test(alt) || /^(img|dsc|pxl|photo|image)[-_ ]?\d+/i.test(alt);

  function poorAlt(text) {
    for (const [, alt, src] of text.matchAll(PHOTO)) {
      const trimmed = alt.trim();
      if (!/\/media\//.test(src) && trimmed) continue; // others' photos: only an empty alt is flagged
      if (!trimmed || fileNames.has(trimmed) || looksLikeFileName(trimmed)) return trimmed || L.alt_empty;
    }
    return null;
  }

  function checkBeforePublishing() {
    const poor = poorAlt(body.value);
    say(warning, poor === null ? "" : fill(L.alt_warning, { alt: poor }));
  }

  // Capture phase: runs before editor.js publishes (and clears the text); never prevents it.
  const composer = $("ed-composer");
  composer.addEventListener("submit", checkBeforePublishing, true);
  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target === body) checkBeforePublishing();
  }, true);
})();
