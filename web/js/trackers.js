// Which trackers this server runs (issue 14 point 3): the server says (GET /api/capabilities and
// the socket's welcome: `capabilities`), and the page offers only those, defaults to the best
// available one and says why another is unavailable. Track requests name the registry name.
//
// The functions are pure (node --test tests/web/js/ tests them) except `fillTrackerSelect`,
// which fills a <select> and the line under it that says why an option is off.

/** The tracker a request should name: `wanted` if it runs here (an alias resolves to the
 * tracker it names here), else the server's default; null until the server has said. */
export function resolveTracker(caps, wanted) {
  if (!caps) return null;
  const runs = (name) => caps.trackers.some((t) => t.name === name && t.available);
  if (wanted && runs(wanted)) return wanted;
  const aliased = wanted ? caps.aliases?.[wanted] : null;
  if (aliased && runs(aliased)) return aliased;
  return caps.default_tracker;
}

/** The text of a tracker's option: its name, and "unavailable" when it does not run here. */
export function trackerText(tracker) {
  return tracker.available ? tracker.label : `${tracker.label} — unavailable here`;
}

/** One line saying why each unavailable tracker is off ("" when all run). */
export function unavailableText(caps) {
  return (caps?.trackers ?? []).filter((t) => !t.available).map((t) => `${t.label}: ${t.why}`).join(" · ");
}

/** Fill `select` with the server's trackers (the unavailable ones disabled, the reason in
 * their title), select `wanted` (resolved), and put the reasons in `why` (an element, optional). */
export function fillTrackerSelect(select, caps, wanted, why = null, { methods = false } = {}) {
  // `methods`: also offer the model-free methods (interpolation), for automated labelling.
  const extra = methods ? caps?.methods ?? [] : [];
  const value = extra.some((m) => m.name === wanted) ? wanted : resolveTracker(caps, wanted);
  const signature = JSON.stringify([caps?.trackers ?? null, extra]);
  if (select.dataset.signature !== signature) {
    select.dataset.signature = signature;
    select.replaceChildren();
    for (const tracker of [...(caps?.trackers ?? []), ...extra]) {
      const option = document.createElement("option");
      option.value = tracker.name;
      option.textContent = trackerText(tracker);
      option.disabled = !tracker.available;
      option.title = tracker.available ? `${tracker.label}: results record ${tracker.model ?? tracker.name}` : tracker.why;
      option.dataset.testid = `tracker-${tracker.name}`;
      select.appendChild(option);
    }
  }
  if (value) select.value = value;
  select.title = caps ? `${value === caps.default_tracker ? "the best tracker this server runs" : "chosen"}${unavailableText(caps) ? `; unavailable: ${unavailableText(caps)}` : ""}` : "asking the server which trackers it runs";
  if (why) {
    why.textContent = unavailableText(caps) ? `Unavailable: ${unavailableText(caps)}` : "";
    why.hidden = !why.textContent;
  }
}
