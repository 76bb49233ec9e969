// The hub console's live update: every 2 s it reads /api/federation.json and rebuilds the
// members table and the alerts with DOM calls (textContent only: nothing is parsed as HTML).
"use strict";
(function () {
  var POLL_MS = 2000;
  var table = document.querySelector("#members tbody");
  var alerts = document.getElementById("alerts");
  var version = document.getElementById("roster-version");
  var updated = document.getElementById("updated");
  // The member page shows one row; only the index follows every member.
  var only = document.body.dataset.member || null;

  function utc(ms) {
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function row(m) {
    var tr = document.createElement("tr");
    tr.dataset.org = m.org;
    tr.dataset.status = m.status;
    m.cells.forEach(function (c) {
      var td = document.createElement("td");
      td.dataset.field = c.field;
      td.className = c.class;
      if (c.field === "org") {
        var a = document.createElement("a");
        a.href = "/member/" + encodeURIComponent(m.org);
        a.textContent = c.text;
        td.appendChild(a);
      } else {
        td.textContent = c.text;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function render(fed) {
    if (table) {
      var members = fed.members.filter(function (m) {
        return only === null || m.org === only;
      });
      table.replaceChildren.apply(table, members.map(row));
    }
    var items = fed.alerts.map(function (a) {
      var li = document.createElement("li");
      li.className = "alert alert-" + a.kind;
      li.textContent = a.text;
      return li;
    });
    if (items.length === 0) {
      var none = document.createElement("li");
      none.className = "none";
      none.textContent = "no alerts";
      items.push(none);
    }
    alerts.replaceChildren.apply(alerts, items);
    version.textContent = String(fed.roster_version);
    updated.textContent = utc(fed.generated_at_unix_ms);
    updated.className = "";
  }

  function poll() {
    fetch("/api/federation.json", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.json();
      })
      .then(render)
      .catch(function () {
        updated.className = "bad";
      });
  }

  setInterval(poll, POLL_MS);
})();
