/**
 * Which lease each delivery this process holds was taken under (a lease is one claim's batch of
 * first deliveries, named after its first seq). Settlements and renewals pass it along, so the
 * scripts check one lease instead of searching a subscription's leases. Knowing it is only a
 * shortcut: a script that is not told searches, and ownership is always checked in Redis.
 */
export class LeaseIndex {
  private readonly byDelivery = new Map<string, string>()

  private key(subscription: string, consumer: string, seq: string): string {
    return `${subscription}\n${consumer}\n${seq}`
  }

  add(subscription: string, consumer: string, seqs: readonly string[], lease: string): void {
    for (const seq of seqs) this.byDelivery.set(this.key(subscription, consumer, seq), lease)
  }

  /** The lease, or '' when this process did not take the delivery under one. */
  get(subscription: string, consumer: string, seq: string): string {
    return this.byDelivery.get(this.key(subscription, consumer, seq)) ?? ''
  }

  delete(subscription: string, consumer: string, seq: string): void {
    this.byDelivery.delete(this.key(subscription, consumer, seq))
  }
}
