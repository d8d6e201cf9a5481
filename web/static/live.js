/* liveblog reader: keeps the server-rendered live page (or embed) up to date over server-sent events.
 *
 * - The page embeds the stream ID of the newest change it reflects (#lb-config "after"); the stream
 *   resumes from there, so nothing between render and connect is lost. EventSource resends
 *   Last-Event-ID by itself when it reconnects; when it gives up (HTTP error) we reconnect ourselves from
 *   the last ID seen. Entries are deduplicated by id + version, deletions leave a tombstone.
 * - A watchdog keeps the connection state honest: the server sends a `heartbeat` event at least every
 *   cfg.heartbeat seconds, so when nothing at all came for two of them the connection is dead (a
 *   half-open TCP connection never errors): show "reconnecting" and start a new stream from the last
 *   ID. The same check runs when a hidden tab becomes visible again (its timers may have been paused).
 * - An ended blog's page holds no stream; it asks for the blog every cfg.ended_poll seconds and comes
 *   back to life (catching up from the last ID) if the blog is reopened.
 * - A long session stays light: at most cfg.max_entries updates (pinned ones aside) stay rendered,
 *   older ones are dropped and come back with "load older"; the tombstones are capped the same way.
 * - Never moves what the reader is looking at: away from the top, changes above the viewport are
 *   compensated by scrolling and a notice ("2 nuovi aggiornamenti") offers to go up; at the top, new
 *   updates slide in and are highlighted.
 * - Plain fields go in with textContent; body_html is sanitized by the server.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("lb-config");
  if (!configNode) return;
  var cfg = JSON.parse(configNode.textContent);
  var L = cfg.labels;
  var root = document.querySelector("[data-lb-root]");
  var list = root.querySelector("[data-lb-list]");
  var template = document.getElementById("lb-entry-template");
  var notice = root.querySelector("[data-lb-notice]");
  var announcer = root.querySelector("[data-lb-announce]");
  var stateNode = root.querySelector("[data-lb-state]");
  var stateText = root.querySelector("[data-lb-state-text]");
  var filterButton = root.querySelector("[data-lb-filter]");
  var olderLink = root.querySelector("[data-lb-older]");
  var moreNode = root.querySelector("[data-lb-more]");
  var reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  var versions = new Map();   // entry id -> version shown
  var deleted = new Set();    // ids of deleted entries: never brought back by a late or cached copy
  var unseen = new Set();     // ids added while the reader was away from the top
  var more = !!cfg.next;      // older updates exist that are not on the page
  var lastId = cfg.after;     // stream ID of the last change applied
  var source = null;
  var retryDelay = 1000;
  var reconnectTimer = null;
  var pollTimer = null;
  var ended = cfg.status === "ended";
  var heartbeatMs = (cfg.heartbeat || 15) * 1000;
  var maxEntries = cfg.max_entries || 200;
  var lastSign = 0;           // Date.now() of the stream's last sign of life (any event, a heartbeat)

  list.querySelectorAll(".lb-entry").forEach(function (el) {
    versions.set(el.dataset.id, Number(el.dataset.version));
  });

  function clock(label) {
    return label ? label.replace(".", L.time_sep) : "";
  }

  function field(el, name) {
    return el.querySelector('[data-field="' + name + '"]');
  }

  function setText(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  /* Writes an entry's state into an <article> cloned from the server-rendered template. */
  function fill(el, e) {
    el.id = "aggiornamento-" + e.id;
    el.dataset.id = e.id;
    el.dataset.version = String(e.version);
    el.dataset.published = e.published_at;
    el.dataset.pinned = e.pinned ? "1" : "0";
    el.dataset.key = e.key_event ? "1" : "0";
    el.classList.toggle("is-pinned", !!e.pinned);
    el.classList.toggle("is-key", !!e.key_event);
    field(el, "permalink").setAttribute("href", cfg.embed ? e.url : "#aggiornamento-" + e.id);
    var time = field(el, "time");
    time.textContent = clock(e.time_label);
    time.setAttribute("datetime", e.published_at);
    field(el, "pinned").hidden = !e.pinned;
    field(el, "key").hidden = !e.key_event;
    setText(field(el, "title"), e.title);
    field(el, "body").innerHTML = e.body_html; // sanitized server-side (nh3) before it was stored
    setText(field(el, "author"), e.author);
    var profile = e.author_profile || {};
    setText(field(el, "author-title"), profile.title);
    var avatar = field(el, "avatar");
    if (profile.avatar) avatar.setAttribute("src", profile.avatar); else avatar.removeAttribute("src");
    avatar.hidden = !profile.avatar;
    var edited = field(el, "edited");
    edited.hidden = !(e.updated_label && e.version > 1);
    var editedTime = field(el, "edited-time");
    editedTime.textContent = clock(e.updated_label);
    editedTime.setAttribute("datetime", e.updated_at);
    field(el, "share").setAttribute("href", e.url);
  }

  function build(e) {
    var el = template.content.firstElementChild.cloneNode(true);
    fill(el, e);
    return el;
  }

  /* Pinned first, then newest first (published_at is RFC 3339 UTC, so strings compare), then id. */
  function before(a, b) {
    if (a.dataset.pinned !== b.dataset.pinned) return a.dataset.pinned === "1";
    if (a.dataset.published !== b.dataset.published) return a.dataset.published > b.dataset.published;
    return Number(a.dataset.id) > Number(b.dataset.id);
  }

  function place(el) {
    var children = list.children;
    for (var i = 0; i < children.length; i++) {
      if (children[i] !== el && before(el, children[i])) {
        list.insertBefore(el, children[i]);
        return;
      }
    }
    list.appendChild(el);
  }

  function visible(el) {
    return el.offsetParent !== null;
  }

  /* True while the reader can see the start of the list: changes may then move things. */
  function atTop() {
    return list.getBoundingClientRect().top >= -1;
  }

  /* Runs change() without moving what the reader is looking at: the first element still on screen
   * (other than `moving`) keeps its position on the screen. */
  function keepPosition(change, moving) {
    if (atTop()) {
      change();
      return;
    }
    var candidates = list.querySelectorAll(".lb-entry");
    var anchor = null;
    for (var i = 0; i < candidates.length; i++) {
      var c = candidates[i];
      if (c !== moving && visible(c) && c.getBoundingClientRect().bottom > 0) {
        anchor = c;
        break;
      }
    }
    anchor = anchor || root.nextElementSibling || root;
    var top = anchor.getBoundingClientRect().top;
    change();
    var shift = anchor.getBoundingClientRect().top - top;
    if (shift) window.scrollBy(0, shift);
  }

  function flash(el, className) {
    if (reducedMotion) return;
    el.classList.remove(className);
    void el.offsetWidth; // restart the animation
    el.classList.add(className);
  }

  function updateEmpty() {
    root.querySelector("[data-lb-empty]").hidden = list.children.length > 0;
    filterButton.hidden = !list.querySelector(".lb-entry.is-key");
  }

  function updateNotice() {
    if (!unseen.size) {
      notice.hidden = true;
      return;
    }
    notice.textContent = unseen.size === 1 ? L.new_one : L.new_many.replace("{n}", String(unseen.size));
    notice.hidden = false;
  }

  function revealUnseen() {
    unseen.forEach(function (id) {
      var el = document.getElementById("aggiornamento-" + id);
      if (el) flash(el, "is-new");
    });
    unseen.clear();
    updateNotice();
  }

  /* Shows an entry's new state; `live` is true for a change from the stream (not an older page). */
  function upsert(e, live) {
    if (deleted.has(e.id)) return;
    var shown = versions.get(e.id);
    if (shown !== undefined && shown >= e.version) return; // already shown: a duplicate or a stale copy
    var el = document.getElementById("aggiornamento-" + e.id);
    if (el) {
      var moves = (el.dataset.pinned === "1") !== !!e.pinned;
      if (moves && !e.pinned && more && isOlderThanLoaded(e)) {
        // Unpinned, it belongs among updates not loaded yet: it comes back with its older page,
        // so "load older" (which pages from the oldest update shown) skips nothing.
        keepPosition(function () { el.remove(); }, el);
        versions.delete(e.id);
        updateEmpty();
        return;
      }
      keepPosition(function () {
        fill(el, e);
        if (moves) place(el);
      }, moves ? el : null);
      versions.set(e.id, e.version);
      if (live && atTop()) flash(el, "is-changed");
      updateEmpty();
      return;
    }
    if (live && !e.pinned && more && isOlderThanLoaded(e)) return; // arrives with its older page
    el = build(e);
    var top = atTop();
    keepPosition(function () { place(el); }, el);
    versions.set(e.id, e.version);
    updateEmpty();
    if (!live) return;
    trim();
    announcer.textContent = L.announce.replace("{time}", clock(e.time_label)) + (e.title ? ": " + e.title : "");
    if (top) {
      flash(el, "is-entering");
    } else if (visible(el)) {
      unseen.add(e.id);
      updateNotice();
    }
  }

  function isOlderThanLoaded(e) {
    var rest = list.querySelectorAll('.lb-entry[data-pinned="0"]');
    var oldest = rest.length ? rest[rest.length - 1].dataset.published : "";
    return e.published_at < oldest;
  }

  /* Drops the oldest unpinned updates past maxEntries (never one on screen while the reader is away
   * from the top): they are reachable again through "load older". */
  function trim() {
    var rest = list.querySelectorAll('.lb-entry[data-pinned="0"]');
    var top = atTop();
    var dropped = false;
    for (var i = rest.length - 1; i >= maxEntries; i--) {
      var el = rest[i];
      if (!top && el.getBoundingClientRect().top < window.innerHeight) break;
      el.remove();
      versions.delete(el.dataset.id);
      unseen.delete(el.dataset.id);
      dropped = true;
    }
    if (!dropped) return;
    more = true;
    var oldest = list.querySelectorAll('.lb-entry[data-pinned="0"]');
    olderLink.setAttribute("href", cfg.older_page + "?before=" + encodeURIComponent(oldest[oldest.length - 1].dataset.id));
    moreNode.hidden = false;
    updateNotice();
  }

  function remove(e) {
    deleted.add(e.id);
    if (deleted.size > maxEntries) deleted.delete(deleted.values().next().value); // the oldest tombstone
    versions.delete(e.id);
    unseen.delete(e.id);
    updateNotice();
    var el = document.getElementById("aggiornamento-" + e.id);
    if (!el) return;
    keepPosition(function () { el.remove(); }, el);
    updateEmpty();
  }

  function setState(state) {
    stateNode.dataset.state = state;
    stateText.textContent = L["state_" + state];
  }

  function showEnded(on) {
    root.classList.toggle("is-ended", on);
    root.querySelector("[data-lb-ended]").hidden = !on;
    var badge = document.querySelector("[data-lb-badge]");
    if (badge) badge.textContent = on ? L.state_ended : L.state_live;
  }

  function end() {
    ended = true;
    stop();
    setState("ended");
    showEnded(true);
    schedulePoll();
  }

  /* The blog was reopened: live again, catching up from the last change applied. */
  function reopen() {
    ended = false;
    window.clearTimeout(pollTimer);
    showEnded(false);
    setState("connecting");
    retryDelay = 1000;
    connect();
  }

  function applyBlog(blog) {
    document.title = blog.title;
    document.querySelectorAll("[data-lb-title]").forEach(function (node) { node.textContent = blog.title; });
    var description = document.querySelector("[data-lb-description]");
    if (description) setText(description, blog.description);
    if (blog.status === "ended" && !ended) end();
    else if (blog.status === "live" && ended) reopen();
  }

  /* ---- ended: a slow check for a reopening, no stream held ------------------------------------ */

  function schedulePoll() {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(checkReopened, cfg.ended_poll * 1000);
  }

  function checkReopened() {
    window.clearTimeout(pollTimer);
    if (!ended) return;
    if (document.visibilityState === "hidden") { // checked again when the tab is shown
      schedulePoll();
      return;
    }
    fetch(cfg.blog, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (blog) { if (blog && blog.status === "live" && ended) applyBlog(blog); })
      .catch(function () {})
      .then(function () { if (ended) schedulePoll(); });
  }

  /* ---- the stream ----------------------------------------------------------------------------- */

  function alive() {
    lastSign = Date.now();
  }

  function stale() {
    return Date.now() - lastSign > 2 * heartbeatMs;
  }

  function stop() {
    window.clearTimeout(reconnectTimer);
    if (source) source.close();
    source = null;
  }

  /* Drops the stream and starts a new one from the last change applied, after a growing delay. */
  function reconnect() {
    stop();
    setState("reconnecting");
    var delay = retryDelay * (0.5 + Math.random() / 2); // spread: a whole audience does not come back at once
    retryDelay = Math.min(retryDelay * 2, 30000);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  /* "N lettori": open event streams of this blog across every server, sent when it changes. */
  function showReaders(count) {
    var node = document.querySelector("[data-lb-readers]");
    if (!node) return;
    node.textContent = count === 1 ? cfg.labels.readers_one : cfg.labels.readers_many.replace("{n}", String(count));
    node.hidden = !count;
  }

  function handler(apply) {
    return function (event) {
      alive();
      if (ended) return;
      if (event.lastEventId) lastId = event.lastEventId;
      apply(JSON.parse(event.data));
    };
  }

  function connect() {
    stop();
    alive(); // the new stream gets two heartbeats to show a sign of life
    var url = cfg.events + "?last_event_id=" + encodeURIComponent(lastId);
    source = new EventSource(url);
    source.onopen = function () {
      alive();
      retryDelay = 1000;
      setState("live");
    };
    source.onerror = function () {
      if (ended) return;
      setState("reconnecting");
      // CONNECTING: the browser retries by itself, sending Last-Event-ID. CLOSED: it gave up
      // (an HTTP error such as 502/503 from a proxy), so start again from the last ID applied.
      if (source.readyState === EventSource.CLOSED) reconnect();
    };
    source.addEventListener("heartbeat", alive);
    source.addEventListener("entry.created", handler(function (e) { upsert(e, true); }));
    source.addEventListener("entry.updated", handler(function (e) { upsert(e, true); }));
    source.addEventListener("entry.deleted", handler(remove));
    source.addEventListener("blog.updated", handler(applyBlog));
    source.addEventListener("blog.readers", function (event) {
      alive();
      showReaders(JSON.parse(event.data).readers);
    });
    source.addEventListener("reset", function () {
      stop();
      window.location.reload(); // the resume point is gone: start again from a fresh render
    });
  }

  /* Nothing (no change, no heartbeat) for two heartbeats: the connection is dead even if it never
   * said so (a paused server, a NAT that forgot us). Also checked when a hidden tab comes back. */
  function watch() {
    if (source && !ended && stale()) reconnect();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !cfg.stream) return;
    if (ended) {
      checkReopened();
    } else if (!source || source.readyState === EventSource.CLOSED || stale()) {
      retryDelay = 1000;
      setState("reconnecting");
      connect();
    }
  });

  /* ---- reader controls ------------------------------------------------------------------------ */

  notice.addEventListener("click", function () {
    var first = null;
    unseen.forEach(function (id) {
      var el = document.getElementById("aggiornamento-" + id);
      if (el && (!first || before(el, first))) first = el;
    });
    root.scrollIntoView({ behavior: reducedMotion ? "auto" : "smooth", block: "start" });
    if (first) first.focus({ preventScroll: true });
    revealUnseen();
  });

  window.addEventListener("scroll", function () {
    if (!atTop()) return;
    if (unseen.size) revealUnseen();
    trim();
  }, { passive: true });

  filterButton.addEventListener("click", function () {
    var on = filterButton.getAttribute("aria-pressed") !== "true";
    filterButton.setAttribute("aria-pressed", on ? "true" : "false");
    root.classList.toggle("only-key", on);
  });

  if (olderLink) {
    olderLink.addEventListener("click", function (event) {
      event.preventDefault();
      if (olderLink.getAttribute("aria-busy") === "true") return;
      loadOlder();
    });
  }

  function loadOlder() {
    olderLink.setAttribute("aria-busy", "true");
    olderLink.textContent = L.loading;
    // The cursor is the oldest unpinned update on screen, so a deleted cursor never breaks paging.
    // With none on screen, the newest page (what is already shown is deduplicated).
    var rest = list.querySelectorAll('.lb-entry[data-pinned="0"]');
    var url = cfg.older;
    if (rest.length) url += "&before=" + encodeURIComponent(rest[rest.length - 1].dataset.id);
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (page) {
        page.entries.forEach(function (e) { upsert(e, false); });
        more = !!page.next;
        olderLink.removeAttribute("aria-busy");
        olderLink.textContent = L.load_older;
        moreNode.hidden = !more;
      })
      .catch(function () {
        olderLink.removeAttribute("aria-busy");
        olderLink.textContent = L.load_failed;
      });
  }

  list.addEventListener("click", function (event) {
    var link = event.target.closest("a.lb-share");
    if (!link) return;
    event.preventDefault();
    var url = link.href;
    if (navigator.share) {
      navigator.share({ title: document.title, url: url }).catch(function () {});
    } else if (navigator.clipboard) {
      navigator.clipboard.writeText(url).then(function () {
        link.textContent = L.copied;
        window.setTimeout(function () { link.textContent = L.share; }, 2000);
      }, function () { window.location.href = url; });
    } else {
      window.location.href = url;
    }
  });

  list.addEventListener("animationend", function (event) {
    event.target.classList.remove("is-new", "is-entering", "is-changed");
  });

  updateEmpty();
  if (cfg.stream) {
    if (ended) {
      schedulePoll();
    } else {
      setState("connecting");
      connect();
    }
    window.setInterval(watch, Math.min(Math.max(heartbeatMs / 4, 250), 5000));
  }
})();
