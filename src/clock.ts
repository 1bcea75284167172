/**
 * `Date.now()` costs 40–70 ns, as much as validating an event; an emit loop calls it once per
 * event. This clock reads the real one at most every `REUSE` calls and never across a turn of
 * the event loop: a reading is dropped at the next macrotask (setImmediate), so an idle process
 * always gets a fresh one, and a busy synchronous loop is at most `REUSE` calls behind. A reading
 * can still be as old as the turn that is running when calls are sparse, so it stamps event
 * times, ids and dedupe windows; what must never come early (an attempt's deadline) counts from
 * the end of the turn instead (`turn()`), which is known only once the turn is over.
 */
const REUSE = 16
let reading = 0
let uses = REUSE
let armed = false

/** A turn of the event loop; `end` is the clock when it was over (Infinity while it runs). */
export interface Turn {
  end: number
}

let running: Turn = { end: Infinity }

function expire(): void {
  armed = false
  uses = REUSE
  running.end = Date.now()
  running = { end: Infinity }
}

function arm(): void {
  if (!armed) {
    armed = true
    // Referenced: an unreferenced immediate lets the loop block in poll until the next timer, and
    // the turn would end (and deadlines counted from it start) only then.
    setImmediate(expire)
  }
}

/**
 * The turn running now. Anything started in it started before its `end`, so a deadline counted
 * from `end` is never early, and it is late by at most what remained of the turn.
 */
export function turn(): Turn {
  arm()
  return running
}

export function now(): number {
  if (uses < REUSE) {
    uses++
    return reading
  }
  reading = Date.now()
  uses = 1
  arm()
  return reading
}
