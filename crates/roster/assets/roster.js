// Roster's page script: keeps the page of the user list live over the `roster.v2` WebSocket
// protocol (live views: the server sends this page's snapshot, then only the operations that
// change it). Moving to another page or searching asks the same socket for another window, with
// no reload; the pager links and the search form still work as plain links and forms without it.
// No framework, no CDN, no inline script (the page's CSP forbids it). DOM is built with
// textContent only, never from HTML strings. Protocol: docs/protocol.md.
"use strict";

(function () {
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const CLOSE_GOING_AWAY = 1001; // the server is stopping
  const CLOSE_ABNORMAL = 1006; // the connection dropped with no close frame (e.g. a node died)

  // How long to wait before reconnect attempt `attempt` (0: the first since the socket was last
  // open) after a close with `code`. Full jitter: uniform in [0, min(cap, base * 2^attempt)), so
  // pages that lost their sockets together do not come back together. A close that every page
  // of a node gets at the same moment (the node stopping, or dying) spreads the first attempt
  // over `spreadMs` (from the server: half its presence grace), when that is longer. `random`
  // is Math.random, or a stand-in. Exported as `roster.reconnectDelay` for tests.
  function reconnectDelay(attempt, code, spreadMs, random) {
    let ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    if (attempt === 0 && (code === CLOSE_GOING_AWAY || code === CLOSE_ABNORMAL)) {
      ceiling = Math.max(ceiling, spreadMs);
    }
    return Math.floor(random() * ceiling);
  }
  window.roster = Object.freeze({ reconnectDelay: reconnectDelay });

  const list = document.getElementById("users");
  if (!list) return;
  const indicator = document.getElementById("connection");
  const onlineCount = document.getElementById("online-count");
  const registeredCount = document.getElementById("registered-count");
  const pager = document.getElementById("pager");
  const search = document.querySelector("form.search");
  const searchInput = search ? search.querySelector("input[name=q]") : null;
  const pageSize = Math.max(1, Number(list.dataset.pageSize) || 200);
  const reconnectSpreadMs = Math.max(0, Number(list.dataset.reconnectSpreadMs) || 0);

  const CLOSE_LOGGED_OUT = 4001;
  const CLOSE_DISABLED = 1008;
  const SEEN_REFRESH_MS = 15000;

  // The window shown: page (from 1) and search text.
  const state = { page: Math.max(1, Number(list.dataset.page) || 1), q: list.dataset.q || "" };
  // The entries in window order (the list's <li>s): operations address them by position.
  let entries = Array.from(list.children);
  let total = null; // users matching the search, from the server
  let socket = null;
  let viewId = 0; // the latest window request (0: the one in the handshake URL)
  let live = false; // the snapshot of viewId has arrived
  let seq = null; // last applied sequence number of this window's stream
  let clockOffset = 0; // server clock minus ours, from the last snapshot
  let attempt = 0;
  let stopped = false;
  let loggedOut = false;

  function setState(name, text) {
    if (!indicator) return;
    indicator.dataset.state = name;
    indicator.textContent = text;
  }

  function serverNow() {
    return Date.now() + clockOffset;
  }

  // "3 minutes ago", by the server's clock.
  function ago(ms) {
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 45) return "just now";
    const m = Math.round(s / 60);
    if (m < 60) return m === 1 ? "a minute ago" : m + " minutes ago";
    const h = Math.round(m / 60);
    if (h < 24) return h === 1 ? "an hour ago" : h + " hours ago";
    const d = Math.round(h / 24);
    if (d < 2) return "yesterday";
    if (d < 30) return d + " days ago";
    const mo = Math.round(d / 30);
    if (mo < 12) return mo === 1 ? "a month ago" : mo + " months ago";
    const y = Math.round(d / 365);
    return y <= 1 ? "a year ago" : y + " years ago";
  }

  function showSeen(li) {
    const ms = Number(li.dataset.lastSeen);
    if (!li.dataset.lastSeen || Number.isNaN(ms)) return;
    li.dataset.seen = "last seen " + ago(ms);
    li.title = "Last seen " + new Date(ms).toLocaleString();
  }

  // One entry: `NAME: Online` or `NAME: Offline` (the tutorial's markup), last seen beside it.
  function fill(li, user) {
    li.dataset.username = user.username;
    li.dataset.id = String(user.id);
    li.className = user.online ? "online" : "offline";
    li.textContent = user.username + ": " + (user.online ? "Online" : "Offline");
    if (!user.online && typeof user.last_seen === "number") {
      li.dataset.lastSeen = String(user.last_seen);
      showSeen(li);
    } else {
      delete li.dataset.lastSeen;
      delete li.dataset.seen;
      li.removeAttribute("title");
    }
    return li;
  }

  function setCounts(frame) {
    if (onlineCount && typeof frame.online_count === "number") onlineCount.textContent = String(frame.online_count);
    if (registeredCount && typeof frame.registered_count === "number") registeredCount.textContent = String(frame.registered_count);
    if (typeof frame.total === "number" && frame.total !== total) {
      total = frame.total;
      renderPager();
    }
  }

  function pageUrl(page, q) {
    return "/?page=" + page + (q ? "&q=" + encodeURIComponent(q) : "");
  }

  function windowQuery() {
    return "offset=" + (state.page - 1) * pageSize + "&limit=" + pageSize + "&q=" + encodeURIComponent(state.q);
  }

  function link(page, rel, text) {
    const a = document.createElement("a");
    a.href = pageUrl(page, state.q);
    a.rel = rel;
    a.textContent = text;
    return a;
  }

  // Previous, "Page N", next: from the window and the total the server sends.
  function renderPager() {
    if (!pager) return;
    const parts = [];
    if (state.page > 1) parts.push(link(state.page - 1, "prev", "← Previous"));
    const label = document.createElement("span");
    label.textContent = "Page " + state.page;
    parts.push(label);
    if (total !== null && state.page * pageSize < total) parts.push(link(state.page + 1, "next", "Next →"));
    pager.replaceChildren(...parts);
  }

  function renderEmpty() {
    let empty = document.querySelector(".empty");
    if (entries.length > 0) {
      if (empty) empty.remove();
      return;
    }
    if (!empty) {
      empty = document.createElement("p");
      empty.className = "empty";
      list.after(empty);
    }
    empty.textContent = state.q ? "No users match “" + state.q + "”." : "No users.";
  }

  function applySnapshot(frame) {
    clockOffset = frame.now - Date.now();
    entries = frame.users.map((u) => fill(document.createElement("li"), u));
    list.replaceChildren(...entries);
    seq = frame.seq;
    total = null;
    setCounts(frame);
    renderEmpty();
  }

  // Operations in order, each at a position: O(operations), never a scan of the list.
  function applyDiff(frame) {
    for (const op of frame.ops) {
      const at = op.at;
      if (!Number.isInteger(at) || at < 0 || at > entries.length || (op.op !== "insert" && at === entries.length)) {
        resubscribe();
        return;
      }
      if (op.op === "insert") {
        const li = fill(document.createElement("li"), op.user);
        list.insertBefore(li, entries[at] || null);
        entries.splice(at, 0, li);
      } else if (op.op === "remove") {
        entries[at].remove();
        entries.splice(at, 1);
      } else if (op.op === "update") {
        fill(entries[at], op.user);
      }
    }
    seq = frame.seq;
    setCounts(frame);
    renderEmpty();
  }

  function onMessage(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (frame.type === "snapshot") {
      if (frame.view !== viewId) return; // the answer to an older request
      live = true;
      applySnapshot(frame);
    } else if (frame.type === "diff") {
      if (!live) return; // the old window's, before the new one's snapshot
      if (seq === null || frame.seq !== seq + 1) {
        resubscribe(); // a gap: never guess
        return;
      }
      applyDiff(frame);
    } else if (frame.type === "error" && frame.view === viewId) {
      // The server refused the window: let it render the page itself.
      window.location.assign(pageUrl(state.page, state.q));
    }
  }

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  // Asks the socket for the current window; its snapshot replaces the list.
  function resubscribe() {
    live = false;
    if (!isOpen()) return; // the next connection asks for it in its URL
    viewId += 1;
    socket.send(JSON.stringify({
      type: "view", id: viewId, offset: (state.page - 1) * pageSize, limit: pageSize, q: state.q,
    }));
  }

  // Shows page `page` of search `q` without a reload (the URL follows, for reloads and links).
  function show(page, q, push) {
    state.page = page;
    state.q = q;
    list.dataset.page = String(page);
    list.dataset.q = q;
    if (push) window.history.pushState({ page: page, q: q }, "", pageUrl(page, q));
    if (searchInput && searchInput.value !== q) searchInput.value = q;
    total = null; // until the new window's snapshot says
    renderPager();
    resubscribe();
  }

  function fromUrl(href) {
    const url = new URL(href, window.location.href);
    if (url.origin !== window.location.origin || url.pathname !== "/") return null;
    const page = Number(url.searchParams.get("page") || "1");
    if (!Number.isInteger(page) || page < 1 || page > 1000000) return null;
    return { page: page, q: (url.searchParams.get("q") || "").trim() };
  }

  if (pager) {
    pager.addEventListener("click", function (event) {
      const a = event.target.closest("a");
      if (!a || !isOpen() || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      const to = fromUrl(a.href);
      if (!to) return;
      event.preventDefault();
      show(to.page, to.q, true);
    });
  }
  if (search && searchInput) {
    search.addEventListener("submit", function (event) {
      const q = searchInput.value.trim();
      if (!isOpen() || Array.from(q).length > 150) return; // the server answers that one
      event.preventDefault();
      show(1, q, true);
    });
  }
  window.addEventListener("popstate", function () {
    const to = fromUrl(window.location.href);
    if (to) show(to.page, to.q, false);
  });

  function connect() {
    if (stopped) return;
    setState("connecting", attempt === 0 ? "Connecting…" : "Reconnecting…");
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    viewId = 0;
    live = false;
    seq = null;
    socket = new WebSocket(scheme + window.location.host + "/users/?" + windowQuery(), "roster.v2");
    socket.onopen = function () {
      attempt = 0;
      setState("live", "Live");
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      socket = null;
      live = false;
      seq = null;
      if (event.code === CLOSE_LOGGED_OUT || event.code === CLOSE_DISABLED) {
        stopped = true;
        loggedOut = true;
        setState("offline", "Logged out");
        return;
      }
      const delay = reconnectDelay(attempt, event.code, reconnectSpreadMs, Math.random);
      attempt += 1;
      setState("offline", "Offline, retrying");
      window.setTimeout(connect, delay);
    };
  }

  // "Last seen" stays true as time passes.
  window.setInterval(function () {
    for (const li of entries) showSeen(li);
  }, SEEN_REFRESH_MS);

  window.addEventListener("pagehide", function () {
    stopped = true;
    if (socket) socket.close(1000, "page closed");
  });
  // A page restored from the back-forward cache starts again from a fresh snapshot.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && stopped && !loggedOut) {
      stopped = false;
      attempt = 0;
      connect();
    }
  });
  window.history.replaceState({ page: state.page, q: state.q }, "", window.location.href);
  for (const li of entries) showSeen(li);
  connect();
})();
