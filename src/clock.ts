/**
 * `Date.now()` costs 40–70 ns, as much as validating an event; an emit loop calls it once per
 * event. This clock reads the real one at most every `REUSE` calls and never across a turn of
 * the event loop: a reading is dropped at the next macrotask (setImmediate), so an idle process
 * always gets a fresh one, and a busy synchronous loop is at most `REUSE` calls behind. A reading
 * can still be as old as the turn that is running when calls are sparse, so what must not start
 * early (an attempt's deadline) begins from `fresh()`, and is then at most `REUSE` deliveries
 * behind.
 */
const REUSE = 16
let reading = 0
let uses = REUSE
let armed = false

function expire(): void {
  armed = false
  uses = REUSE
}

export function now(): number {
  if (uses < REUSE) {
    uses++
    return reading
  }
  return fresh()
}

/** Reads the real clock, and lets the next `REUSE - 1` calls of `now()` have this reading. */
export function fresh(): number {
  reading = Date.now()
  uses = 1
  if (!armed) {
    armed = true
    setImmediate(expire).unref()
  }
  return reading
}
