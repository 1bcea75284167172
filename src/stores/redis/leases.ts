/**
 * Which lease each delivery this process holds was taken under (a lease is one claim's batch of
 * first deliveries, named after its first seq). Settlements and renewals pass it along, so the
 * scripts check one lease instead of searching a subscription's leases. Knowing it is only a
 * shortcut: a script that is not told searches, and ownership is always checked in Redis.
 */
export class LeaseIndex {
  /** subscription key + consumer → seq → lease */
  private readonly holders = new Map<string, Map<string, string>>()

  /** The deliveries one consumer holds in one subscription. */
  of(subscription: string, consumer: string): Map<string, string> {
    const key = `${subscription}\n${consumer}`
    let held = this.holders.get(key)
    if (!held) this.holders.set(key, (held = new Map()))
    return held
  }

  /** Forgets a consumer's deliveries once it holds none. */
  prune(subscription: string, consumer: string): void {
    const key = `${subscription}\n${consumer}`
    if (this.holders.get(key)?.size === 0) this.holders.delete(key)
  }
}
