// Roster's page script: keeps the user list live over the `roster.v1` WebSocket protocol.
// No framework, no CDN, no inline script (the page's CSP forbids it). DOM is built with
// textContent only, never from HTML strings. Protocol: docs/protocol.md.
"use strict";

(function () {
  const list = document.getElementById("users");
  if (!list) return;
  const indicator = document.getElementById("connection");
  const onlineCount = document.getElementById("online-count");
  const registeredCount = document.getElementById("registered-count");
  // Only the first, unfiltered page shows the head of the list, where people come and go;
  // other pages update the state of the people they show.
  const isHead = list.dataset.page === "1" && list.dataset.q === "";

  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  const CLOSE_LOGGED_OUT = 4001;
  const CLOSE_DISABLED = 1008;

  let socket = null;
  let seq = null; // last applied sequence number
  let attempt = 0;
  let stopped = false;
  let loggedOut = false;

  function setState(state, text) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent = text;
  }

  function entries() {
    return Array.from(list.querySelectorAll("li[data-username]"));
  }

  function findEntry(user) {
    for (const li of entries()) {
      if (user.id !== undefined && li.dataset.id === String(user.id)) return li;
      if (li.dataset.username === user.username) return li;
    }
    return null;
  }

  function formatSeen(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return null;
    const pad = (n) => String(n).padStart(2, "0");
    return "last seen " + d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  function makeEntry(user) {
    const li = document.createElement("li");
    li.dataset.username = user.username;
    if (user.id !== undefined) li.dataset.id = String(user.id);
    return li;
  }

  function render(li, online, lastSeen) {
    li.className = online ? "online" : "offline";
    li.textContent = li.dataset.username + ": " + (online ? "Online" : "Offline");
    if (online) {
      delete li.dataset.seen;
    } else if (lastSeen !== undefined && lastSeen !== null) {
      li.dataset.lastSeen = String(lastSeen);
      const seen = formatSeen(lastSeen);
      if (seen) li.dataset.seen = seen;
    }
  }

  // Online users first, by name; then the rest, most recently seen first.
  function placeOnline(li) {
    const name = li.dataset.username.toLowerCase();
    for (const other of entries()) {
      if (other === li) continue;
      if (!other.classList.contains("online") || other.dataset.username.toLowerCase() > name) {
        list.insertBefore(li, other);
        return;
      }
    }
    list.appendChild(li);
  }

  function placeOffline(li) {
    const seen = Number(li.dataset.lastSeen || 0);
    for (const other of entries()) {
      if (other === li || other.classList.contains("online")) continue;
      if (Number(other.dataset.lastSeen || 0) <= seen) {
        list.insertBefore(li, other);
        return;
      }
    }
    list.appendChild(li);
  }

  function wentOnline(user) {
    let li = findEntry(user);
    if (!li) {
      if (!isHead) return;
      li = makeEntry(user);
    }
    render(li, true);
    if (isHead) placeOnline(li);
  }

  function wentOffline(user) {
    const li = findEntry(user);
    if (!li) return;
    render(li, false, user.last_seen);
    if (isHead) placeOffline(li);
  }

  function signedUp(user) {
    if (!isHead || findEntry(user)) return;
    const li = makeEntry(user);
    render(li, false);
    list.appendChild(li);
    const empty = document.querySelector(".empty");
    if (empty) empty.remove();
  }

  function setCounts(frame) {
    if (onlineCount && typeof frame.online_count === "number") onlineCount.textContent = String(frame.online_count);
    if (registeredCount && typeof frame.registered_count === "number") registeredCount.textContent = String(frame.registered_count);
  }

  function applySnapshot(frame) {
    const online = new Map(frame.online.map((u) => [String(u.id), u]));
    for (const li of entries()) {
      const isOnline = online.has(li.dataset.id);
      if (li.classList.contains("online") !== isOnline) {
        render(li, isOnline);
        if (isHead) (isOnline ? placeOnline : placeOffline)(li);
      }
      online.delete(li.dataset.id);
    }
    for (const u of online.values()) wentOnline(u);
    setCounts(frame);
    seq = frame.seq;
  }

  function applyDiff(frame) {
    for (const id of frame.deleted || []) {
      const li = list.querySelector('li[data-id="' + String(Number(id)) + '"]');
      if (li) li.remove();
    }
    for (const u of frame.signed_up || []) signedUp(u);
    for (const u of frame.offline || []) wentOffline(u);
    for (const u of frame.online || []) wentOnline(u);
    setCounts(frame);
    seq = frame.seq;
  }

  function onMessage(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (frame.type === "snapshot") {
      applySnapshot(frame);
    } else if (frame.type === "diff") {
      if (seq === null || frame.seq !== seq + 1) {
        // A gap: never guess. Reconnect for a fresh snapshot.
        resync();
        return;
      }
      applyDiff(frame);
    }
  }

  function resync() {
    seq = null;
    if (socket) socket.close(4000, "resync");
  }

  function connect() {
    if (stopped) return;
    setState("connecting", attempt === 0 ? "Connecting…" : "Reconnecting…");
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/users/", "roster.v1");
    socket.onopen = function () {
      attempt = 0;
      setState("live", "Live");
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      socket = null;
      seq = null;
      if (event.code === CLOSE_LOGGED_OUT || event.code === CLOSE_DISABLED) {
        stopped = true;
        loggedOut = true;
        setState("offline", "Logged out");
        return;
      }
      // Full jitter: spread reconnects so a restarted server is not hit by everyone at once.
      const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
      const delay = event.code === 4000 ? 0 : Math.floor(Math.random() * cap);
      attempt += 1;
      setState("offline", "Offline, retrying");
      window.setTimeout(connect, delay);
    };
  }

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
  connect();
})();
