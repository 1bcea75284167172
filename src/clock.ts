/**
 * `Date.now()` costs 40–70 ns, as much as validating an event; an emit loop calls it once per
 * event. This clock reads the real one at most every `REUSE` calls and never across a turn of
 * the event loop: a reading is dropped at the next macrotask (setImmediate), so an idle process
 * always gets a fresh one, and a busy synchronous loop is at most `REUSE` calls behind. A reading
 * can still be as old as the turn that is running (as Node's own timer base is), so it stamps
 * event times, ids and dedupe windows, and never an attempt's deadline: a handler's timeout
 * counts from a fresh reading.
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
  reading = Date.now()
  uses = 1
  if (!armed) {
    armed = true
    setImmediate(expire).unref()
  }
  return reading
}
