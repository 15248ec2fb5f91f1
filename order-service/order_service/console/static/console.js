// The operator console's script: plain JavaScript, no build step, no dependencies.
//
// The admin token lives in sessionStorage (this tab only) and goes out as an Authorization header on
// each same-origin API call; never in a URL, a cookie or a log line. Every value from the API is put in
// the page with textContent, never as markup, so a product name like <img src=x onerror=...> is text.
// Refresh is a poll with one request chain in flight at a time: the next starts only when the last has
// finished, and the pause doubles (up to a minute) while calls fail or are slow.
"use strict";

(function () {
  const TOKEN_KEY = "orderConsole.adminToken";
  const PAGE_SIZE = 20;
  const POLL_MS = 5000;
  const POLL_MAX_MS = 60000;
  const SLOW_MS = 2000;
  const TIMEOUT_MS = 15000;
  const STATES = [
    "pending", "confirmed", "cancelling", "cancelled", "fulfilling", "fulfilled", "rejected", "failing", "failed",
  ];
  const IN_FLIGHT = ["pending", "failing", "cancelling", "fulfilling"];
  const IDENTIFIER = /^[A-Za-z0-9_.-]{1,64}$/;
  // What each kind of audit discrepancy means, in words.
  const DISCREPANCIES = {
    confirmed_without_reservation: "Confirmed order without a matching held reservation",
    fulfilled_without_sale: "Fulfilled order whose stock was not committed as sold",
    reservation_without_order: "Stock held for an order the order service does not have",
    stock_held_for_finished_order: "Stock still held for an order that is finished",
    reserved_mismatch: "Reserved units differ from the held reservations",
    ledger_mismatch: "Stock columns differ from the stock ledger",
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    view: "signin",
    orderId: null,
    offset: 0,
    filter: { status: "", customer: "" },
    products: new Map(),
  };

  // --- small helpers -------------------------------------------------------------------------------------

  function el(tag, options, ...children) {
    const node = document.createElement(tag);
    const o = options || {};
    if (o.className) node.className = o.className;
    if (o.text !== undefined) node.textContent = String(o.text);
    for (const [name, value] of Object.entries(o.attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const money = (value) => (value === null || value === undefined ? "—" : Number(value).toFixed(2));
  const when = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC") : "—");

  // An order's lines: `items` (every order of this version carries them), else the one line of an order
  // from before carts.
  function orderLines(o) {
    if (Array.isArray(o.items)) return o.items;
    return [{ product_id: o.product_id, quantity: o.quantity, unit_price: o.unit_price, line_price: o.total_price }];
  }

  function ago(seconds) {
    const s = Math.round(seconds);
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function describeError(result) {
    const error = result.data && result.data.error;
    return error ? `${result.status} ${error.code}: ${error.message}` : `HTTP ${result.status}`;
  }

  function notice(text) {
    const box = $("notice");
    box.textContent = text;
    box.hidden = !text;
  }

  // Rebuild a table body, keeping keyboard focus on the same control (by its data-key) across refreshes.
  function fillRows(tbody, rows) {
    const focused = document.activeElement;
    const key = focused && tbody.contains(focused) ? focused.getAttribute("data-key") : null;
    tbody.replaceChildren(...rows);
    if (key) {
      const again = Array.from(tbody.querySelectorAll("[data-key]")).find((n) => n.getAttribute("data-key") === key);
      if (again) again.focus();
    }
  }

  // A table cell that carries its column's name, shown beside the value when a narrow screen stacks the row.
  function cell(label, text, className) {
    return el("td", { className: className || "", text, attrs: { "data-label": label } });
  }

  function emptyRow(columns, text) {
    return el("tr", {}, el("td", { text, attrs: { colspan: columns } }));
  }

  // --- the API -------------------------------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class SignedOut extends Error {}

  async function call(method, path, body, bearer) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${bearer || token()}` };
    const init = { method, headers, cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(TIMEOUT_MS) };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, data };
  }

  // A call made while signed in: a 401 means the token stopped being accepted (rotated): sign out.
  async function api(method, path, body) {
    if (!token()) throw new SignedOut();
    const result = await call(method, path, body);
    if (result.status === 401) {
      signOut("The admin token is no longer accepted. Sign in again.");
      throw new SignedOut();
    }
    return result;
  }

  // --- refresh: one chain of calls at a time, backing off while slow or failing -----------------------------

  const poll = { timer: null, busy: false, again: false, delay: POLL_MS };

  function refreshNow() {
    if (poll.busy) {
      poll.again = true; // once the running refresh ends; never a second one alongside it
      return;
    }
    clearTimeout(poll.timer);
    runRefresh();
  }

  async function runRefresh() {
    if (!token() || state.view === "signin") return;
    poll.busy = true;
    const started = performance.now();
    let ok = true;
    try {
      await LOADERS[state.view]();
      const line = $("refresh");
      line.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes by itself.`;
      line.classList.remove("stale");
    } catch (error) {
      if (error instanceof SignedOut) {
        poll.busy = false;
        return;
      }
      ok = false;
      const line = $("refresh");
      line.textContent = `Refresh failed (${error.message}); showing the last data, trying again shortly.`;
      line.classList.add("stale");
    }
    poll.busy = false;
    const slow = performance.now() - started > SLOW_MS;
    poll.delay = ok && !slow ? POLL_MS : Math.min(poll.delay * 2, POLL_MAX_MS);
    if (poll.again) {
      poll.again = false;
      poll.timer = setTimeout(runRefresh, 0);
    } else {
      schedule();
    }
  }

  function schedule() {
    clearTimeout(poll.timer);
    if (!document.hidden && token()) poll.timer = setTimeout(runRefresh, poll.delay);
  }

  document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(poll.timer) : refreshNow()));

  // A failed refresh keeps the data shown; the message says why.
  function failed(result) {
    return new Error(describeError(result));
  }

  // --- stock ---------------------------------------------------------------------------------------------

  async function loadStock() {
    const result = await api("GET", "/admin/products");
    if (result.status !== 200) throw failed(result);
    const { products, low_stock_threshold: threshold } = result.data;
    state.products = new Map(products.map((p) => [p.product_id, p]));
    const low = products.filter((p) => p.low_stock).length;
    $("stock-summary").textContent =
      `${products.length} products; ${low} at or below ${threshold} available units (highlighted).`;
    const rows = products.map((p) => {
      const label = `${p.name} (${p.product_id})`;
      const available = cell("Available", p.available_quantity, "num");
      if (p.low_stock) available.append(el("span", { className: "tag low", text: "Low" }));
      const restock = el("button", {
        text: "Restock",
        attrs: { type: "button", "data-key": `restock:${p.product_id}`, "aria-label": `Restock ${label}` },
      });
      restock.addEventListener("click", () => editProduct(p.product_id, "restock"));
      const reprice = el("button", {
        text: "Change price",
        attrs: { type: "button", "data-key": `price:${p.product_id}`, "aria-label": `Change price of ${label}` },
      });
      reprice.addEventListener("click", () => editProduct(p.product_id, "price"));
      const row = el(
        "tr",
        { className: p.low_stock ? "low" : "", attrs: { "data-product": p.product_id } },
        cell("Product", p.product_id),
        cell("Name", p.name, "name"),
        cell("Price", money(p.price), "num"),
        available,
        cell("Reserved", p.reserved_quantity, "num"),
        cell("Sold", p.sold_quantity, "num"),
        el("td", { attrs: { "data-label": "Actions" } }, el("div", { className: "row-actions" }, restock, reprice)),
      );
      return row;
    });
    fillRows($("stock-table").tBodies[0], rows.length ? rows : [emptyRow(7, "No products.")]);
  }

  let editing = null;

  function editProduct(productId, kind) {
    const product = state.products.get(productId);
    if (!product) return;
    editing = { product, kind };
    const restock = kind === "restock";
    $("edit-title").textContent = restock ? "Restock" : "Change the price";
    $("edit-product").textContent = restock
      ? `${product.name} (${product.product_id}): ${product.available_quantity} available now.`
      : `${product.name} (${product.product_id}): ${money(product.price)} now.`;
    $("edit-label").textContent = restock ? "Units to add" : "New price";
    const input = $("edit-value");
    input.value = "";
    input.min = restock ? "1" : "0";
    input.step = restock ? "1" : "0.01";
    $("edit-error").textContent = "";
    $("edit-dialog").showModal();
    input.focus();
  }

  async function submitEdit(event) {
    event.preventDefault();
    if (!editing) return;
    const { product, kind } = editing;
    const raw = $("edit-value").value.trim();
    const label = `${product.name} (${product.product_id})`;
    let body;
    let question;
    let yes;
    if (kind === "restock") {
      const quantity = Number(raw);
      if (!/^\d+$/.test(raw) || quantity < 1) {
        $("edit-error").textContent = "Enter a whole number of units, 1 or more.";
        return;
      }
      body = { quantity };
      question = `Add ${quantity} units to ${label}? It has ${product.available_quantity} available now.`;
      yes = "Restock";
    } else {
      if (!/^\d+(\.\d{1,2})?$/.test(raw)) {
        $("edit-error").textContent = "Enter a price with at most two decimals, e.g. 19.99.";
        return;
      }
      body = { price: Number(raw) };
      question = `Change the price of ${label} from ${money(product.price)} to ${money(raw)}? Orders already placed keep their price.`;
      yes = "Change the price";
    }
    $("edit-dialog").close();
    editing = null;
    if (!(await confirmAction(question, yes))) return;
    const path = `/admin/products/${encodeURIComponent(product.product_id)}`;
    try {
      const result =
        kind === "restock" ? await api("POST", `${path}/restock`, body) : await api("PATCH", path, body);
      if (result.status === 200) {
        const p = result.data;
        notice(
          kind === "restock"
            ? `Restocked ${p.name} (${p.product_id}): ${p.available_quantity} available.`
            : `Price of ${p.name} (${p.product_id}) is now ${money(p.price)}.`,
        );
      } else {
        notice(`Not done: ${describeError(result)}`);
      }
    } catch (error) {
      // No answer is not a refusal: the change may have been made (a restock is never sent twice).
      if (!(error instanceof SignedOut)) notice(`No answer (${error.message}): check the stock before trying again.`);
    }
    refreshNow();
  }

  // --- confirmation ----------------------------------------------------------------------------------------

  function confirmAction(text, yesLabel) {
    return new Promise((resolve) => {
      const dialog = $("confirm-dialog");
      $("confirm-text").textContent = text;
      $("confirm-yes").textContent = yesLabel;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.showModal();
      $("confirm-no").focus();
    });
  }

  // --- orders --------------------------------------------------------------------------------------------

  async function loadOrders() {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.offset) });
    if (state.filter.status) params.set("status", state.filter.status);
    if (state.filter.customer) params.set("customer_id", state.filter.customer);
    const result = await api("GET", `/orders?${params}`);
    if (result.status !== 200) throw failed(result);
    const { orders, total_count: total } = result.data;
    const first = total ? state.offset + 1 : 0;
    const last = state.offset + orders.length;
    $("orders-summary").textContent = total
      ? `Orders ${first}–${last} of ${total}, newest first.`
      : "No orders match.";
    $("orders-prev").disabled = state.offset === 0;
    $("orders-next").disabled = last >= total;
    const rows = orders.map((o) =>
      el(
        "tr",
        { attrs: { "data-order": o.order_id } },
        el(
          "td",
          { attrs: { "data-label": "Order" } },
          el("a", { text: o.order_id, attrs: { href: `#order/${o.order_id}`, "data-key": o.order_id } }),
        ),
        cell("State", o.status, `status status-${o.status}`),
        cell("Customer", o.customer_id, "name"),
        cell("Product", orderLines(o).map((line) => line.product_id).join(", ")),
        cell("Quantity", o.quantity, "num"),
        cell("Total", money(o.total_price), "num"),
        cell("Placed", when(o.created_at)),
      ),
    );
    fillRows($("orders-table").tBodies[0], rows.length ? rows : [emptyRow(7, "No orders on this page.")]);
  }

  function applyFilter(event) {
    event.preventDefault();
    const customer = $("filter-customer").value.trim();
    if (customer && !IDENTIFIER.test(customer)) {
      notice("A customer id is 1 to 64 letters, digits, '.', '_' or '-'.");
      return;
    }
    notice("");
    state.filter = { status: $("filter-status").value, customer };
    state.offset = 0;
    refreshNow();
  }

  // --- one order -----------------------------------------------------------------------------------------

  async function loadOrder() {
    const id = state.orderId;
    const result = await api("GET", `/orders/${encodeURIComponent(id)}`);
    if (result.status === 404) {
      $("order-title").textContent = `Order ${id}`;
      $("order-facts").replaceChildren(el("dt", { text: "Not found" }), el("dd", { text: describeError(result) }));
      $("order-lines").tBodies[0].replaceChildren();
      $("order-timeline").replaceChildren();
      $("order-total").textContent = "";
      $("order-cancel").disabled = true;
      $("order-fulfil").disabled = true;
      return;
    }
    if (result.status !== 200) throw failed(result);
    renderOrder(result.data);
  }

  function renderOrder(o) {
    $("order-title").textContent = `Order ${o.order_id}`;
    const facts = [
      ["State", o.status],
      ["Customer", o.customer_id],
      ["Placed", when(o.created_at)],
      ["Total", money(o.total_price)],
    ];
    $("order-facts").replaceChildren(
      ...facts.flatMap(([term, value]) => [
        el("dt", { text: term }),
        el("dd", { text: value, className: term === "State" ? `status status-${o.status}` : "" }),
      ]),
    );
    const lines = orderLines(o);
    $("order-lines").tBodies[0].replaceChildren(
      ...lines.map((line) => {
        const name = state.products.get(line.product_id);
        return el(
          "tr",
          {},
          cell("Product", name ? `${line.product_id} · ${name.name}` : line.product_id, "name"),
          cell("Quantity", line.quantity, "num"),
          cell("Unit price", money(line.unit_price), "num"),
          cell("Line price", money(line.line_price), "num"),
        );
      }),
    );
    $("order-total").textContent = money(o.total_price);
    // The timeline: the order's events when the API gives them, else its timestamps.
    const events = Array.isArray(o.events)
      ? o.events.map((e) => [e.at || e.created_at, e.type || e.status])
      : [
          [o.created_at, "placed"],
          [o.cancelled_at, "cancelled"],
          [o.fulfilled_at, "fulfilled"],
        ].filter(([at]) => at);
    $("order-timeline").replaceChildren(
      ...events.map(([at, what]) => el("li", {}, el("time", { text: when(at), attrs: { datetime: at } }), ` ${what}`)),
    );
    $("order-cancel").disabled = !["confirmed", "cancelling"].includes(o.status);
    $("order-fulfil").disabled = !["confirmed", "fulfilling"].includes(o.status);
  }

  async function orderAction(kind) {
    const id = state.orderId;
    const cancel = kind === "cancel";
    const question = cancel
      ? `Cancel order ${id}? Its reserved stock goes back to inventory.`
      : `Fulfil order ${id}? Its reserved stock is committed as sold.`;
    if (!(await confirmAction(question, cancel ? "Cancel the order" : "Fulfil the order"))) return;
    const outcome = $("order-outcome");
    outcome.className = "outcome";
    outcome.textContent = cancel ? "Cancelling…" : "Fulfilling…";
    try {
      const path = `/orders/${encodeURIComponent(id)}`;
      const result = cancel ? await api("DELETE", path) : await api("POST", `${path}/fulfil`);
      if (result.status === 200) {
        outcome.classList.add("ok");
        outcome.textContent = cancel
          ? "200: cancelled; the stock is back in inventory."
          : "200: fulfilled; the stock is sold.";
        renderOrder(result.data);
      } else if (result.status === 202) {
        outcome.classList.add("pending");
        outcome.textContent = `202: ${result.data.status}; inventory has not confirmed yet, the recovery worker finishes it.`;
        renderOrder(result.data);
      } else {
        outcome.classList.add("bad");
        outcome.textContent = `Refused: ${describeError(result)}`;
      }
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        outcome.classList.add("bad");
        outcome.textContent = `No answer (${error.message}); the order may or may not have changed.`;
      }
    }
    refreshNow();
  }

  // --- saga health and the audit ----------------------------------------------------------------------------

  function renderWorkers(workers) {
    const card = $("health-worker");
    if (workers.length === 0) {
      card.textContent = "No recovery worker has recorded a heartbeat: none is running, so in-flight orders stay in flight.";
      return;
    }
    card.replaceChildren(
      el(
        "ul",
        {},
        ...workers.map((w) =>
          el(
            "li",
            {},
            `${w.worker_id}: last heartbeat ${ago(w.age_seconds)} ago `,
            w.fresh
              ? el("span", { text: "(moving)" })
              : el("span", { className: "overdue", text: `(stale: older than ${w.stale_after_seconds} s)` }),
          ),
        ),
      ),
    );
  }

  function renderOutbox(o) {
    if (!o) {
      $("health-outbox").textContent = "No outbox figures from this server.";
    } else if (o.broker) {
      const oldest = o.unpublished ? `; the oldest waits for ${ago(o.oldest_unpublished_age_seconds)}` : "";
      $("health-outbox").textContent =
        `${o.unpublished} event(s) not yet published to the broker${oldest}. ${o.kept} kept for the feed.`;
    } else {
      const oldest = o.kept ? `, the oldest from ${ago(o.oldest_unpublished_age_seconds)} ago` : "";
      $("health-outbox").textContent =
        `${o.kept} event(s) kept for the feed (GET /events)${oldest}; no broker, kept ${o.retention_hours} h.`;
    }
  }

  async function loadHealth() {
    const result = await api("GET", "/admin/saga");
    if (result.status !== 200) throw failed(result);
    const h = result.data;
    $("health-inflight").textContent = String(h.in_flight);
    renderWorkers(h.workers || []);
    renderOutbox(h.outbox);
    const oldest = $("health-oldest");
    if (h.oldest_in_flight) {
      const o = h.oldest_in_flight;
      const overdue = o.age_seconds > h.recovery_grace_seconds;
      const link = el("a", { text: o.order_id, attrs: { href: `#order/${o.order_id}` } });
      oldest.replaceChildren(`Oldest: `, link, ` ${o.status} for ${ago(o.age_seconds)}.`);
      if (overdue) {
        oldest.append(
          " ",
          el("span", {
            className: "overdue",
            text: `Older than the recovery grace period (${h.recovery_grace_seconds} s): the worker should have finished it.`,
          }),
        );
      }
    } else {
      oldest.textContent = "No order is between two steps.";
    }
    $("health-counts").tBodies[0].replaceChildren(
      ...STATES.map((s) =>
        el(
          "tr",
          {},
          el("td", { className: `status status-${s}`, text: IN_FLIGHT.includes(s) ? `${s} (in flight)` : s }),
          el("td", { className: "num", text: h.counts[s] || 0 }),
        ),
      ),
    );
  }

  async function runAudit() {
    const box = $("audit-result");
    const button = $("audit-run");
    button.disabled = true;
    box.replaceChildren(el("p", { text: "Auditing…" }));
    try {
      const result = await api("GET", "/admin/audit");
      if (result.status !== 200 && result.status !== 409) {
        box.replaceChildren(el("p", { className: "error", text: `The audit did not run: ${describeError(result)}` }));
        return;
      }
      const report = result.data;
      const words = { orders_in_flight: "of the orders in flight, not judged yet" };
      const checked = Object.entries(report.checked)
        .map(([what, n]) => `${n} ${words[what] || what.replaceAll("_", " ")}`)
        .join(", ");
      if (report.consistent) {
        box.replaceChildren(
          el("p", { className: "audit-ok", text: "Consistent: no discrepancies." }),
          el("p", { text: `Checked ${checked}.` }),
        );
        return;
      }
      const shown = report.discrepancies.length;
      box.replaceChildren(
        el("p", {
          className: "audit-bad",
          text:
            `${report.discrepancy_count} ${report.discrepancy_count === 1 ? "discrepancy" : "discrepancies"}` +
            `${shown < report.discrepancy_count ? ` (the first ${shown} shown)` : ""}.`,
        }),
        el("p", { text: `Checked ${checked}.` }),
        el(
          "ul",
          { className: "discrepancies" },
          ...report.discrepancies.map((d) =>
            el(
              "li",
              { attrs: { "data-kind": d.kind } },
              el("span", { className: "kind", text: DISCREPANCIES[d.kind] || d.kind }),
              `${d.subject}: ${d.detail}`,
            ),
          ),
        ),
      );
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        box.replaceChildren(el("p", { className: "error", text: `The audit did not answer (${error.message}).` }));
      }
    } finally {
      button.disabled = false;
    }
  }

  const LOADERS = { stock: loadStock, orders: loadOrders, order: loadOrder, health: loadHealth };

  // --- views and sign-in -----------------------------------------------------------------------------------

  function route(userNavigated) {
    if (!token()) {
      show("signin");
      return;
    }
    const hash = decodeURIComponent(location.hash.slice(1));
    if (hash.startsWith("order/")) {
      if (state.orderId !== hash.slice(6)) $("order-outcome").textContent = "";
      state.orderId = hash.slice(6);
      show("order");
    } else {
      show(["stock", "orders", "health"].includes(hash) ? hash : "stock");
    }
    if (userNavigated) {
      notice("");
      const heading = document.querySelector(`#view-${state.view} h1`);
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
    refreshNow();
  }

  function show(view) {
    state.view = view;
    for (const name of ["signin", "stock", "orders", "order", "health"]) $(`view-${name}`).hidden = name !== view;
    const signedIn = view !== "signin";
    $("nav").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    const section = view === "order" ? "orders" : view;
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.getAttribute("data-view") === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (!signedIn) $("refresh").textContent = "";
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const candidate = input.value.trim();
    const error = $("signin-error");
    error.textContent = "";
    if (!candidate) {
      error.textContent = "Enter the admin token.";
      return;
    }
    let result;
    try {
      result = await call("GET", "/admin/saga", undefined, candidate);
    } catch (e) {
      error.textContent = `The order service did not answer (${e.message}). Try again.`;
      return;
    }
    if (result.status === 401) {
      error.textContent = "That token was not accepted (401). Check the admin token (ADMIN_TOKEN) and try again.";
      input.select();
      return;
    }
    if (result.status !== 200) {
      error.textContent = `Could not sign in: ${describeError(result)}`;
      return;
    }
    input.value = "";
    sessionStorage.setItem(TOKEN_KEY, candidate);
    notice("");
    route(true);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(poll.timer);
    state.products = new Map();
    // Nothing read with the token stays on the page.
    for (const id of ["stock-table", "orders-table", "order-lines", "health-counts"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["stock-summary", "orders-summary", "order-facts", "order-timeline", "order-outcome",
      "health-inflight", "health-oldest", "health-worker", "audit-result"]) $(id).replaceChildren();
    notice("");
    for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
    history.replaceState(null, "", location.pathname);
    show("signin");
    $("signin-error").textContent = typeof message === "string" ? message : "";
    $("token").focus();
  }

  function start() {
    const select = $("filter-status");
    for (const s of STATES) select.append(el("option", { text: s, attrs: { value: s } }));
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut());
    $("orders-filter").addEventListener("submit", applyFilter);
    $("orders-prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE_SIZE);
      refreshNow();
    });
    $("orders-next").addEventListener("click", () => {
      state.offset += PAGE_SIZE;
      refreshNow();
    });
    $("order-cancel").addEventListener("click", () => orderAction("cancel"));
    $("order-fulfil").addEventListener("click", () => orderAction("fulfil"));
    $("audit-run").addEventListener("click", runAudit);
    $("edit-form").addEventListener("submit", submitEdit);
    $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
    $("confirm-yes").addEventListener("click", () => $("confirm-dialog").close("yes"));
    $("confirm-no").addEventListener("click", () => $("confirm-dialog").close("no"));
    window.addEventListener("hashchange", () => route(true));
    route(false);
  }

  start();
})();
