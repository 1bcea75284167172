/** Something the heartbeat pings: a WebSocket connection. */
export interface Pingable {
  /** Pings sent since the last pong. */
  unansweredPings: number
  ping(): void
  /** Closes a peer that stopped answering. */
  timeout(): void
}

/** Pings in a row without a pong before the connection is closed (Volt MX: 3). */
export const MAX_UNANSWERED_PINGS = 3

/**
 * One timer for every connection (not one each): every `interval` a connection is pinged, or
 * closed once it has left MAX_UNANSWERED_PINGS in a row unanswered.
 */
export class Heartbeat {
  private readonly members = new Set<Pingable>()
  private readonly timer: ReturnType<typeof setInterval>

  constructor(interval: number) {
    this.timer = setInterval(() => this.beat(), interval)
    this.timer.unref()
  }

  add(member: Pingable): void {
    this.members.add(member)
  }

  delete(member: Pingable): void {
    this.members.delete(member)
  }

  private beat(): void {
    for (const member of this.members) {
      if (member.unansweredPings >= MAX_UNANSWERED_PINGS) {
        this.members.delete(member)
        member.timeout()
      } else {
        member.unansweredPings++
        member.ping()
      }
    }
  }

  stop(): void {
    clearInterval(this.timer)
    this.members.clear()
  }
}
