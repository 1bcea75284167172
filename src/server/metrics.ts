import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { BusObserver } from '../bus.js'
import type { AttemptReport } from '../delivery/worker.js'
import type { HeraldEvent } from '../event.js'

export type Transport = 'websocket' | 'voltmx' | 'sse'

/** Topic roots become label values; past this many distinct roots they count as `other`, so publishers cannot blow up the series count. */
const MAX_ROOTS = 100
const OTHER = 'other'

/**
 * The server's Prometheus metrics, in a registry of its own (several servers in one process
 * stay apart). Fed by the bus observer and the stream transports.
 */
export class Metrics {
  readonly registry = new Registry()
  private readonly roots = new Set<string>()
  /** Plain counts per topic root on the hot path; copied into their counters when scraped. */
  private readonly published = new Map<string, number>()
  private readonly delivered = new Map<string, number>()
  private readonly retried = new Map<string, number>()
  private readonly dead = new Map<string, number>()
  /** One labelled child per outcome, so that an observation does not hash its labels. */
  private readonly latencyOf: Record<AttemptReport['outcome'], { observe(value: number): void }>
  private readonly connections: Gauge<'transport'>
  /** Plain numbers on the hot path; copied into the counter when scraped. */
  private readonly streamedCounts: Record<Transport, number> = { websocket: 0, voltmx: 0, sse: 0 }
  private readonly slowClosed: Counter<'transport'>

  constructor() {
    const registers = [this.registry]
    const countsByRoot = (name: string, help: string, counts: Map<string, number>) =>
      new Counter({
        name,
        help,
        labelNames: ['root'],
        registers,
        collect() {
          this.reset()
          for (const [root, count] of counts) this.inc({ root }, count)
        },
      })
    countsByRoot('herald_events_published_total', 'Events stored, by topic root', this.published)
    countsByRoot('herald_events_delivered_total', 'Deliveries that succeeded, by topic root', this.delivered)
    countsByRoot(
      'herald_events_retried_total',
      'Failed attempts scheduled for a retry, by topic root',
      this.retried,
    )
    countsByRoot(
      'herald_events_dead_lettered_total',
      'Deliveries that became dead letters, by topic root',
      this.dead,
    )
    const latency = new Histogram({
      name: 'herald_delivery_duration_seconds',
      help: 'How long one delivery attempt took, by outcome',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
    this.latencyOf = {
      delivered: latency.labels({ outcome: 'delivered' }),
      retry: latency.labels({ outcome: 'retry' }),
      dead: latency.labels({ outcome: 'dead' }),
    }
    this.connections = new Gauge({
      name: 'herald_connections',
      help: 'Open stream connections, by transport',
      labelNames: ['transport'],
      registers,
    })
    const streamedCounts = this.streamedCounts
    new Counter({
      name: 'herald_stream_events_total',
      help: 'Events sent to stream clients, by transport',
      labelNames: ['transport'],
      registers,
      collect() {
        this.reset()
        for (const [transport, count] of Object.entries(streamedCounts)) this.inc({ transport }, count)
      },
    })
    this.slowClosed = new Counter({
      name: 'herald_stream_slow_closed_total',
      help: 'Stream clients closed because they read too slowly',
      labelNames: ['transport'],
      registers,
    })
    for (const transport of ['websocket', 'voltmx', 'sse'] as const) this.connections.set({ transport }, 0)
    collectDefaultMetrics({ register: this.registry })
  }

  private lastTopic = ''
  private lastRoot = ''

  private root(topic: string): string {
    // Topics repeat: the last one's root spares a slice and a set lookup.
    if (topic === this.lastTopic) return this.lastRoot
    this.lastTopic = topic
    return (this.lastRoot = this.rootOf(topic))
  }

  private rootOf(topic: string): string {
    const slash = topic.indexOf('/')
    const root = slash === -1 ? topic : topic.slice(0, slash)
    if (this.roots.has(root)) return root
    if (this.roots.size >= MAX_ROOTS) return OTHER
    this.roots.add(root)
    return root
  }

  /** The bus observer: counts stored events and attempts. Never throws. */
  readonly observer: BusObserver = {
    published: (events: readonly HeraldEvent[]) => {
      for (const event of events) count(this.published, this.root(event.topic))
    },
    attempted: (report: AttemptReport) => {
      const root = this.root(report.event.topic)
      if (report.outcome === 'delivered') count(this.delivered, root)
      else if (report.outcome === 'retry') count(this.retried, root)
      else count(this.dead, root)
      this.latencyOf[report.outcome].observe(report.durationMs / 1000)
    },
  }

  connectionOpened(transport: Transport): void {
    this.connections.inc({ transport })
  }

  connectionClosed(transport: Transport): void {
    this.connections.dec({ transport })
  }

  eventsStreamed(transport: Transport, count: number): void {
    this.streamedCounts[transport] += count
  }

  slowClientClosed(transport: Transport): void {
    this.slowClosed.inc({ transport })
  }

  render(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}

function count(counts: Map<string, number>, root: string): void {
  counts.set(root, (counts.get(root) ?? 0) + 1)
}
