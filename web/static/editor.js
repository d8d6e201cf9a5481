/* The editor's page: sign in with a bearer token, compose with a server-rendered preview, post with
   Ctrl/Cmd+Enter, and edit, pin, mark or delete earlier updates, kept live by the event stream.
   Everything goes through the public API (see CONTRACT.md). No framework, no inline script. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("ed-config").textContent);
  const L = config.labels;
  const TOKEN_KEY = "liveblog.token";
  const DRAFT_KEY = `liveblog.draft.${config.blog.slug}`;
  const PREVIEW_DELAY_MS = 150;
  const $ = (id) => document.getElementById(id);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
  const clock = (label) => (label || "").replace(".", L.time_sep);

  let token = sessionStorage.getItem(TOKEN_KEY);
  let blog = config.blog;

  // ---- API ---------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {}; // the API's problem document (English), e.g. `current` on 412
    }
  }

  /** fetch() that turns problem+json answers and network failures into ApiError. */
  async function call(method, path, body, headers = {}) {
    const init = { method, headers: { ...headers }, cache: "no-store" };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, null);
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  /** The field a 422 is about, named in the page's language (the API's detail quotes it: 'body'). */
  function fieldName(detail) {
    const quoted = /'(\w+)'/.exec(detail || "");
    return L[`field_${quoted && quoted[1]}`] || L.field_other;
  }

  /** What went wrong, in the page's language: chosen by status (and field), never the API's English. */
  function explain(error) {
    const status = error.status;
    if (status === 0) return L.network_error;
    if (status >= 500) return L.error_5xx;
    if (status === 422) {
      const detail = error.problem.detail || "";
      const kind = /longer than/.test(detail) ? "error_422_long"
        : /must not be empty|is required/.test(detail) ? "error_422_empty" : "error_422";
      return fill(L[kind], { field: fieldName(detail) });
    }
    return L[`error_${status}`] || fill(L.error_other, { status });
  }

  function say(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  /** Shows a failure: the message in the page's language, the API's detail (if any) as small print. */
  function sayFailure(element, error) {
    const main = document.createElement("span");
    main.textContent = `${L.error_prefix} ${explain(error)}`;
    element.replaceChildren(main);
    if (error.problem && error.problem.detail) {
      const detail = document.createElement("small");
      detail.className = "ed-error-detail";
      detail.lang = "en";
      detail.textContent = `${L.error_detail} ${error.problem.detail}`;
      element.append(" ", detail);
    }
    element.hidden = false;
  }

  /** A fresh Idempotency-Key; crypto.randomUUID needs a secure context, getRandomValues does not. */
  function newKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---- preview ------------------------------------------------------------------------------------

  const previewTurn = new WeakMap();

  /** Render `text` on the server (exactly as a post would be) into `target`; the latest call wins. */
  function schedulePreview(text, target) {
    const turn = (previewTurn.get(target)?.turn || 0) + 1;
    clearTimeout(previewTurn.get(target)?.timer);
    const current = () => previewTurn.get(target).turn === turn;
    const timer = setTimeout(async () => {
      if (!text.trim()) {
        const hint = document.createElement("p");
        hint.className = "ed-muted";
        hint.textContent = L.preview_empty;
        target.replaceChildren(hint);
        return;
      }
      try {
        const { body_html: html } = await call("POST", config.preview, { body: text });
        if (current()) target.innerHTML = html; // sanitized by the server
      } catch (error) {
        if (current()) sayFailure(target, error);
      }
    }, PREVIEW_DELAY_MS);
    previewTurn.set(target, { turn, timer });
  }

  /** Drops a pending or in-flight preview for `target` (an edit was saved or cancelled). */
  function cancelPreview(target) {
    const pending = previewTurn.get(target);
    if (pending) {
      clearTimeout(pending.timer);
      previewTurn.set(target, { turn: pending.turn + 1 });
    }
  }

  function showTitle(element, title) {
    element.textContent = title || "";
    element.hidden = !title;
  }

  // ---- the list of updates ------------------------------------------------------------------------

  const list = $("ed-entries");
  const entries = new Map(); // id -> newest known entry
  const gone = new Set(); // ids deleted since the page opened: a late list page must not revive them
  const template = $("ed-entry-template");
  const editTemplate = $("ed-edit-template");
  let nextPage = null; // the API's link to the page after the oldest one shown
  let paged = false; // "load earlier" was used: reloading the first page must not rewind nextPage

  const itemOf = (id) => list.querySelector(`li[data-id="${CSS.escape(id)}"]`);

  function byReaderOrder(a, b) {
    if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
    return a.published_at < b.published_at ? 1 : a.published_at > b.published_at ? -1 : 0;
  }

  function paint(item, entry) {
    const field = (name) => item.querySelector(`[data-field="${name}"]`);
    const time = field("time");
    time.dateTime = entry.published_at;
    time.textContent = clock(entry.time_label);
    field("pinned").hidden = !entry.pinned;
    field("key").hidden = !entry.key_event;
    say(field("edited"), entry.updated_label ? fill(L.edited_at, { time: clock(entry.updated_label) }) : "");
    item.querySelector('[data-action="pin"]').textContent = entry.pinned ? L.unpin : L.pin;
    item.querySelector('[data-action="key"]').textContent = entry.key_event ? L.unmark_key : L.mark_key;
    item.classList.toggle("is-pinned", entry.pinned);
    item.classList.toggle("is-key", entry.key_event);
    const form = item.querySelector("form.ed-edit");
    if (form) {
      // Being edited here: keep the editor's text and preview, but say that it changed elsewhere.
      if (entry.version !== Number(form.dataset.version)) form.querySelector('[data-field="stale"]').hidden = false;
      return;
    }
    showTitle(field("title"), entry.title);
    field("body").innerHTML = entry.body_html; // sanitized by the server before it was stored
    say(field("author"), entry.author ? `— ${entry.author}` : "");
  }

  function place() {
    const ordered = [...entries.values()].sort(byReaderOrder);
    ordered.forEach((entry, index) => {
      const item = itemOf(entry.id);
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
    });
    $("ed-empty").hidden = entries.size > 0;
  }

  function upsert(entry) {
    if (gone.has(entry.id)) return;
    const known = entries.get(entry.id);
    if (known && known.version > entry.version) return;
    entries.set(entry.id, entry);
    let item = itemOf(entry.id);
    if (!item) {
      item = template.content.firstElementChild.cloneNode(true);
      item.dataset.id = entry.id;
      list.append(item);
    }
    paint(item, entry);
    place();
  }

  function forget(id) {
    gone.add(id);
    entries.delete(id);
    itemOf(id)?.remove();
    place();
  }

  /** Adds one page of the API's list; returns its link to the next page (on failure: the current one). */
  async function loadPage(path) {
    say($("ed-list-error"), "");
    try {
      const data = await call("GET", path);
      data.entries.forEach(upsert);
      return data.next;
    } catch (error) {
      sayFailure($("ed-list-error"), error);
      return nextPage;
    }
  }

  function showMore(next) {
    nextPage = next;
    $("ed-more").hidden = !nextPage;
  }

  async function firstPage() {
    const next = await loadPage(`${config.api}/entries?limit=50`);
    if (!paged) showMore(next);
  }

  $("ed-more").addEventListener("click", async () => {
    paged = true;
    showMore(await loadPage(nextPage));
  });

  const entryPath = (id) => `${config.api}/entries/${encodeURIComponent(id)}`;
  const ifMatch = (version) => ({ "If-Match": `"${version}"` });

  /** PATCH or DELETE an entry as of `version` (If-Match). On 412 the colleague's version is shown at
      once (the answer carries it under `current`) and the error goes on to the caller. */
  async function change(method, id, version, changes) {
    try {
      return await call(method, entryPath(id), changes, ifMatch(version));
    } catch (error) {
      if (error.status === 412 && error.problem.current) upsert(error.problem.current);
      throw error;
    }
  }

  async function act(item, work) {
    const error = item.querySelector('[data-field="error"]');
    say(error, "");
    item.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    try {
      await work();
    } catch (failed) {
      if (failed.status === 412) say(error, L.changed_meanwhile);
      else sayFailure(error, failed);
    } finally {
      item.querySelectorAll("button").forEach((button) => { button.disabled = false; });
    }
  }

  /** Opens the edit form on the entry's source (read anew: the list and the stream carry no source). */
  function startEditing(item, id) {
    if (item.querySelector("form.ed-edit")) return;
    act(item, async () => {
      const entry = await call("GET", entryPath(id)); // with the token: carries `body`, as written
      upsert(entry);
      if (!item.isConnected || item.querySelector("form.ed-edit")) return;
      openForm(item, entry);
    });
  }

  function openForm(item, entry) {
    const form = editTemplate.content.firstElementChild.cloneNode(true);
    form.dataset.version = entry.version;
    form.elements.title.value = entry.title || "";
    form.elements.body.value = entry.body;
    const title = item.querySelector('[data-field="title"]');
    const body = item.querySelector('[data-field="body"]');
    const conflict = form.querySelector('[data-field="conflict"]');
    const part = (name) => conflict.querySelector(`[data-conflict="${name}"]`);
    let theirs = null; // the colleague's entry, while a conflict is open
    const refresh = () => {
      showTitle(title, form.elements.title.value.trim());
      schedulePreview(form.elements.body.value, body);
    };
    const stop = () => {
      cancelPreview(body);
      form.remove();
      paint(item, entries.get(entry.id) || entry);
      item.querySelector('[data-action="edit"]').focus();
    };
    const showConflict = (mine, current) => {
      theirs = current;
      part("mine").value = mine;
      part("theirs").value = current.body;
      part("theirs-title").textContent = current.title || "";
      part("theirs-box").hidden = false;
      part("choices").hidden = false;
      part("kept").hidden = true;
      conflict.hidden = false;
      form.querySelector('[data-field="stale"]').hidden = true;
      part("choices").querySelector("button").focus();
    };
    const save = () => act(item, async () => {
      const mine = form.elements.body.value;
      try {
        upsert(await change("PATCH", entry.id, form.dataset.version,
                            { body: mine, title: form.elements.title.value.trim() || null }));
      } catch (error) {
        if (error.status !== 412 || !error.problem.current) throw error;
        showConflict(mine, error.problem.current); // nothing was saved; the editor chooses
        return;
      }
      stop();
    });
    conflict.addEventListener("click", (event) => {
      const choice = event.target.closest("button[data-choice]")?.dataset.choice;
      if (!choice || !theirs) return;
      form.dataset.version = theirs.version; // every choice starts from the colleague's version
      if (choice === "mine") {
        conflict.hidden = true;
        save();
      } else if (choice === "theirs") {
        stop();
      } else { // edit on top of theirs; the editor's own text stays beside it, to copy from
        form.elements.body.value = theirs.body;
        form.elements.title.value = theirs.title || "";
        part("theirs-box").hidden = true;
        part("choices").hidden = true;
        part("kept").hidden = false;
        refresh();
        form.elements.body.focus();
      }
    });
    form.addEventListener("input", (event) => { if (conflict.contains(event.target)) return; refresh(); });
    form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); save(); }
      if (event.key === "Escape") { event.preventDefault(); stop(); }
    });
    form.querySelector('[data-action="cancel"]').addEventListener("click", stop);
    item.querySelector(".ed-entry-head").after(form);
    form.elements.body.focus();
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const item = button?.closest("li.ed-entry");
    if (!item || item.querySelector("form.ed-edit")?.contains(button)) return;
    const entry = entries.get(item.dataset.id);
    if (!entry) return;
    const patch = (changes) => act(item, async () => upsert(await change("PATCH", entry.id, entry.version, changes)));
    switch (button.dataset.action) {
      case "edit": startEditing(item, entry.id); break;
      case "pin": patch({ pinned: !entry.pinned }); break;
      case "key": patch({ key_event: !entry.key_event }); break;
      case "revisions": act(item, () => showRevisions(item, entry)); break;
      case "delete":
        if (window.confirm(L.confirm_delete)) {
          act(item, async () => {
            await change("DELETE", entry.id, entry.version);
            forget(entry.id);
          });
        }
        break;
    }
  });

  // ---- the blog: status ---------------------------------------------------------------------------

  function showBlog(next) {
    blog = next;
    const status = $("ed-status");
    status.dataset.status = blog.status;
    status.textContent = blog.status === "live" ? L.status_live : L.status_ended;
    $("ed-status-toggle").textContent = blog.status === "live" ? L.end_blog : L.reopen_blog;
    $("ed-blog-title").textContent = blog.title;
  }

  $("ed-status-toggle").addEventListener("click", async () => {
    const ending = blog.status === "live";
    if (ending && !window.confirm(L.confirm_end)) return;
    const button = $("ed-status-toggle");
    button.disabled = true;
    try {
      showBlog(await call("PATCH", config.api, { status: ending ? "ended" : "live" }));
    } catch (error) {
      window.alert(`${L.error_prefix} ${explain(error)}`);
    } finally {
      button.disabled = false;
    }
  });

  // ---- live: the event stream ---------------------------------------------------------------------

  let lastEventId = null; // for a stream made anew after the browser gave up reconnecting by itself
  let listed = false;

  function connect() {
    const conn = $("ed-conn");
    const state = (name) => { conn.dataset.state = name; conn.textContent = L[`conn_${name}`]; };
    const url = lastEventId ? `${config.events}?last_event_id=${encodeURIComponent(lastEventId)}` : config.events;
    const stream = new EventSource(url);
    const on = (name, handle) => stream.addEventListener(name, (event) => {
      if (event.lastEventId) lastEventId = event.lastEventId;
      handle(JSON.parse(event.data));
    });
    stream.addEventListener("open", () => {
      state("live");
      if (!listed) firstPage(); // the stream is now attached: whatever came before is in this page
      listed = true;
    });
    stream.addEventListener("error", () => {
      state("lost");
      if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    });
    on("entry.created", (entry) => { upsert(entry); loadPending(); }); // a scheduled one may have gone out
    on("entry.updated", upsert);
    on("entry.deleted", (entry) => forget(entry.id));
    on("blog.updated", showBlog);
    on("reset", () => {
      // The stream no longer holds what this page missed: start the list over.
      entries.clear();
      // Items being edited stay (their text is the editor's); no CSS has-selector: older browsers throw.
      list.querySelectorAll("li.ed-entry").forEach((item) => {
        if (!item.querySelector("form.ed-edit")) item.remove();
      });
      paged = false;
      firstPage();
    });
  }

  // ---- composing ----------------------------------------------------------------------------------

  const composer = $("ed-composer");
  const fields = composer.elements;
  const composeError = $("ed-compose-error");
  const composeOk = $("ed-compose-ok");
  let attempt = null; // {payload, key}: a retried identical post reuses its Idempotency-Key
  let posting = false;

  function payload() {
    const body = { body: fields.body.value };
    const title = fields.title.value.trim();
    if (title) body.title = title;
    if (fields.key_event.checked) body.key_event = true;
    if (fields.pinned.checked) body.pinned = true;
    return body;
  }

  function composed() {
    sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ title: fields.title.value, body: fields.body.value }));
    showTitle($("ed-preview-heading"), fields.title.value.trim());
    schedulePreview(fields.body.value, $("ed-preview"));
  }

  async function publish() {
    if (posting) return;
    if (!fields.body.value.trim()) {
      fields.body.focus();
      return;
    }
    const request = payload();
    const signature = JSON.stringify(request);
    if (!attempt || attempt.signature !== signature) attempt = { signature, key: newKey() };
    posting = true;
    const button = $("ed-publish");
    button.disabled = true;
    button.textContent = L.publishing;
    say(composeError, "");
    say(composeOk, "");
    try {
      const entry = await call("POST", `${config.api}/entries`, request, { "Idempotency-Key": attempt.key });
      upsert(entry);
      attempt = null;
      composer.reset();
      composed();
      say(composeOk, fill(L.published_at, { time: clock(entry.time_label) }));
    } catch (error) {
      sayFailure(composeError, error); // the text stays where it is
    } finally {
      posting = false;
      button.disabled = false;
      button.textContent = L.publish;
      fields.body.focus();
    }
  }

  composer.addEventListener("input", composed);
  composer.addEventListener("submit", (event) => { event.preventDefault(); publish(); });
  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      publish();
    }
  });

  function restoreDraft() {
    try {
      const draft = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
      if (draft) {
        fields.title.value = draft.title || "";
        fields.body.value = draft.body || "";
      }
    } catch {
      sessionStorage.removeItem(DRAFT_KEY);
    }
    composed();
  }

  // ---- drafts, scheduled updates, revisions ------------------------------------------------------

  const pending = $("ed-pending");

  /** A wall-clock time typed in the blog's timezone ("2026-05-01T18:30") as a Date. */
  function zonedToDate(local) {
    const [day, time] = local.split("T");
    const [y, mo, d] = day.split("-").map(Number);
    const [h, mi] = time.split(":").map(Number);
    const wall = Date.UTC(y, mo - 1, d, h, mi);
    const format = new Intl.DateTimeFormat("en-US", {
      timeZone: blog.timezone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    const offset = (at) => {
      const p = Object.fromEntries(format.formatToParts(new Date(at)).map((part) => [part.type, part.value]));
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - at;
    };
    return new Date(wall - offset(wall - offset(wall)));
  }

  const whenLabel = (iso) => new Intl.DateTimeFormat(blog.language, {
    timeZone: blog.timezone, dateStyle: "short", timeStyle: "short",
  }).format(new Date(iso));

  function pendingItem(entry) {
    const item = document.createElement("li");
    item.className = "ed-pending-item";
    item.dataset.id = entry.id;
    const what = document.createElement("span");
    what.textContent = entry.title || entry.body.slice(0, 120);
    const state = document.createElement("small");
    state.className = "ed-muted";
    state.textContent = entry.status === "scheduled"
      ? fill(L.scheduled_for, { time: whenLabel(entry.publish_at) }) : L.draft_badge;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ed-btn ed-btn-small";
    button.dataset.action = "publish-now";
    button.textContent = L.publish_now;
    item.append(what, " ", state, " ", button);
    return item;
  }

  async function loadPending() {
    try {
      const [scheduled, drafts] = await Promise.all(["scheduled", "draft"].map(
        (status) => call("GET", `${config.api}/entries?status=${status}`)));
      const all = [...scheduled.entries, ...drafts.entries];
      pending.replaceChildren(...all.map(pendingItem));
      $("ed-pending-empty").hidden = all.length > 0;
      say($("ed-pending-error"), "");
    } catch (error) {
      sayFailure($("ed-pending-error"), error);
    }
  }

  pending.addEventListener("click", async (event) => {
    const button = event.target.closest('button[data-action="publish-now"]');
    if (!button) return;
    button.disabled = true;
    try {
      upsert(await call("PATCH", `${config.api}/entries/${button.closest("li").dataset.id}`, { status: "published" }));
    } catch (error) {
      sayFailure($("ed-pending-error"), error);
    }
    loadPending();
  });

  /** Saves the composer's text as a draft, or scheduled (`extra` carries publish_at): nothing public. */
  async function keep(extra) {
    if (!fields.body.value.trim()) {
      fields.body.focus();
      return;
    }
    say(composeError, "");
    say(composeOk, "");
    try {
      const entry = await call("POST", `${config.api}/entries`, { ...payload(), ...extra }, { "Idempotency-Key": newKey() });
      composer.reset();
      composed();
      say(composeOk, entry.status === "scheduled"
        ? fill(L.scheduled_for, { time: whenLabel(entry.publish_at) }) : L.draft_saved);
      loadPending();
    } catch (error) {
      sayFailure(composeError, error);
    }
  }

  $("ed-save-draft").addEventListener("click", () => keep({ status: "draft" }));
  $("ed-schedule").addEventListener("click", () => {
    const local = $("ed-when").value;
    if (!local) {
      $("ed-when").focus();
      return;
    }
    keep({ publish_at: zonedToDate(local).toISOString() });
  });

  /** Lists an entry's versions under it, each with "Restore" (an ordinary edit: a new version). */
  async function showRevisions(item, entry) {
    const box = item.querySelector('[data-field="revisions"]');
    if (!box.hidden) {
      box.hidden = true;
      return;
    }
    const { revisions } = await call("GET", `${config.api}/entries/${entry.id}/revisions`);
    box.replaceChildren(...revisions.slice().reverse().map((revision) => {
      const line = document.createElement("li");
      const label = document.createElement("span");
      label.textContent = fill(L.revision_line, {
        version: revision.version, time: whenLabel(revision.updated_at), by: revision.by || "",
      });
      const text = document.createElement("pre");
      text.className = "ed-revision-body";
      text.textContent = revision.body;
      line.append(label, text);
      if (revision.version !== entry.version) {
        const restore = document.createElement("button");
        restore.type = "button";
        restore.className = "ed-btn ed-btn-small";
        restore.textContent = L.restore;
        restore.addEventListener("click", () => act(item, async () => {
          const current = entries.get(entry.id);
          upsert(await change("PATCH", entry.id, current.version, { body: revision.body, title: revision.title }));
          box.hidden = true;
        }));
        line.append(restore);
      }
      return line;
    }));
    box.hidden = false;
  }

  // ---- signing in ---------------------------------------------------------------------------------

  let started = false;

  function enter(author) {
    $("ed-signin").hidden = true;
    $("ed-workspace").hidden = false;
    for (const id of ["ed-conn", "ed-who", "ed-status-toggle", "ed-sign-out"]) $(id).hidden = false;
    $("ed-who").textContent = fill(L.signed_in_as, { name: author });
    if (!started) {
      started = true;
      connect(); // lists the first page once the stream is attached
      restoreDraft();
      loadPending();
    }
    fields.body.focus();
  }

  /** Checks the token with an empty preview (it needs the editor role, like posting). */
  async function signIn(candidate) {
    token = candidate;
    try {
      // An empty preview for this blog: needs the editor role and a token allowed on this blog.
      const { author } = await call("POST", config.preview, { body: "", blog: config.blog.slug });
      sessionStorage.setItem(TOKEN_KEY, token);
      enter(author);
    } catch (error) {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      $("ed-signin").hidden = false;
      sayFailure($("ed-signin-error"), error);
      $("ed-token").focus();
    }
  }

  $("ed-signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    say($("ed-signin-error"), "");
    signIn($("ed-token").value.trim());
  });

  $("ed-sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    window.location.reload(); // the draft stays in this tab's sessionStorage
  });

  showBlog(blog);
  if (token) signIn(token);
  else $("ed-token").focus();
})();
