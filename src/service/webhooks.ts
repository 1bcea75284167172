import { createHash } from 'node:crypto'
import type { Bus, EventBus, SubscriptionInfo } from '../bus.js'
import { assertOnlyRetryFields, resolveRetryPolicy, type RetryPolicy } from '../delivery/policy.js'
import { HeraldError, describeError } from '../errors.js'
import { tenantKey, type Tenant } from '../event.js'
import { ulid } from '../ids.js'
import { consoleLogger, type Logger } from '../logger.js'
import { splitPatterns } from '../topic.js'
import { appSubscriptionId, assertAppName, parseManifest } from './manifest.js'
import { SecretBox, isSealed, openSecret } from './secret-box.js'
import { generateSecret } from './signature.js'
import {
  assertWebhookTarget,
  shownUrl,
  webhookHandler,
  type EndpointGoneError,
  type WebhookOptions,
  type WebhookTarget,
} from './webhook.js'

/** Set when the endpoint answered 410 Gone: nothing is delivered until it is registered again. */
export interface DisabledEndpoint {
  /** ISO time it was disabled. */
  at: string
  /** The answer that disabled it. */
  reason: string
}

/** `PUT /v1/apps/:app`: a manifest and where the app listens. */
export interface AppRegistration {
  /** The app's base URL; deliveries go to `{url}/{account}/{workspace}/_events`. */
  url: string
  /** A `service.json` (or just its `{ events }` block). */
  manifest: unknown
  retry?: Partial<RetryPolicy>
  /** `whsec_...`; generated when absent (and kept when an app registers again without one). */
  secret?: string
  /** Sent to the app as `x-vtex-credential` (a token it may use to publish back). */
  credential?: string
}

export interface AppHandlerInfo {
  handler: string
  subscriptionId: string
  keys: string[]
  sender?: string
  disabled?: DisabledEndpoint
}

export interface RegisteredApp {
  app: string
  url: string
  handlers: AppHandlerInfo[]
  retry?: Partial<RetryPolicy>
  /** Only in the answer to a registration: listings never show secrets. */
  secret?: string
}

/** `POST /v1/subscriptions`: one endpoint for some patterns. */
export interface WebhookSubscriptionInput {
  /** Generated (`wh_<ulid>`) when absent; ids starting with `app:` belong to apps. */
  id?: string
  patterns: string | readonly string[]
  url: string
  sender?: string
  retry?: Partial<RetryPolicy>
  format?: 'herald' | 'cloudevents'
  secret?: string
}

export interface WebhookSubscriptionInfo {
  id: string
  patterns: string[]
  url: string
  format: 'herald' | 'cloudevents'
  sender?: string
  retry?: Partial<RetryPolicy>
  createdAt: string
  disabled?: DisabledEndpoint
  /** Only in the answer to a creation. */
  secret?: string
}

/**
 * What a webhook subscription keeps in the store (its `meta`), so that a restarted server
 * delivers again without being told. The secret is kept there because every delivery is signed:
 * sealed when the registry has a `secretsKey`, else in plain text.
 */
interface WebhookMeta {
  kind: 'app' | 'webhook'
  url: string
  format: WebhookTarget['format']
  secret: string
  app?: string
  handler?: string
  credential?: string
  retry?: Partial<RetryPolicy>
  disabled?: DisabledEndpoint
}

export interface WebhookRegistryOptions extends WebhookOptions {
  logger?: Logger
  /**
   * Seals webhook secrets in the store (AES-256-GCM, keyed from this passphrase of at least 16
   * characters). Without it they are stored in plain text. Every process sharing the store needs
   * the same one; secrets stored in plain text before are sealed when next attached.
   */
  secretsKey?: string
}

/** One attachment in this process: a new object each time, so that a late `disable` can tell. */
interface Attached {
  fingerprint: string
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function metaOf(info: SubscriptionInfo): WebhookMeta | undefined {
  const meta = info.meta
  if (!isObject(meta) || (meta.kind !== 'app' && meta.kind !== 'webhook')) return undefined
  if (typeof meta.url !== 'string' || typeof meta.secret !== 'string' || typeof meta.format !== 'string')
    return undefined
  return meta as unknown as WebhookMeta
}

function checkRetry(retry: unknown): Partial<RetryPolicy> | undefined {
  if (retry === undefined) return undefined
  resolveRetryPolicy(retry as Partial<RetryPolicy>) // throws invalid_option naming the field
  assertOnlyRetryFields(retry as object)
  return retry as Partial<RetryPolicy>
}

function optionalText(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '' || value.length > 4096) {
    throw new HeraldError('invalid_option', `${field} must be a non-empty string`)
  }
  return value
}

/** The settings a subscription is delivered with, to tell whether the store's differ from ours. */
function fingerprint(patterns: readonly string[], sender: string | undefined, meta: WebhookMeta): string {
  return JSON.stringify([patterns, sender ?? null, meta], (_key, value: unknown) =>
    isObject(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  )
}

function appInfo(app: string, records: SubscriptionInfo[]): RegisteredApp | undefined {
  const mine = records.filter((record) => metaOf(record)?.kind === 'app' && metaOf(record)?.app === app)
  if (mine.length === 0) return undefined
  const meta = metaOf(mine[0]!)!
  const info: RegisteredApp = {
    app,
    url: meta.url,
    handlers: mine.map((record) => {
      const handler: AppHandlerInfo = {
        handler: metaOf(record)!.handler ?? record.id,
        subscriptionId: record.id,
        keys: record.patterns,
      }
      if (record.sender !== undefined) handler.sender = record.sender
      const disabled = metaOf(record)!.disabled
      if (disabled !== undefined) handler.disabled = disabled
      return handler
    }),
  }
  if (meta.retry !== undefined) info.retry = meta.retry
  return info
}

function subscriptionInfo(record: SubscriptionInfo, meta: WebhookMeta): WebhookSubscriptionInfo {
  const info: WebhookSubscriptionInfo = {
    id: record.id,
    patterns: record.patterns,
    url: meta.url,
    format: meta.format === 'cloudevents' ? 'cloudevents' : 'herald',
    createdAt: new Date(record.createdAt).toISOString(),
  }
  if (record.sender !== undefined) info.sender = record.sender
  if (meta.retry !== undefined) info.retry = meta.retry
  if (meta.disabled !== undefined) info.disabled = meta.disabled
  return info
}

/**
 * Webhook deliveries kept as durable subscriptions: apps (one subscription per manifest handler,
 * `app:<app>:<handler>`, VTEX IO protocol) and single endpoints (`/v1/subscriptions`). Everything
 * needed to deliver lives in the subscription's `meta`, so `restore()` at start picks up where a
 * previous process stopped. Changes to one app or subscription are serialized. An endpoint that
 * answers 410 Gone is disabled: detached everywhere, its cursor kept, until it is registered again.
 */
/**
 * How long a registration may hold its name in the store (a server dying mid-registration frees
 * it after this), and how long another waits for it before answering 503.
 */
const REGISTRATION_LOCK = { ttlMs: 30_000, waitMs: 10_000 }

export class WebhookRegistry {
  private readonly logger: Logger
  private readonly locks = new Map<string, Promise<unknown>>()
  /** What this process delivers: tenant/id → the settings it attached with. */
  private readonly attachedAs = new Map<string, Attached>()
  /** Registrations in progress in this process, and how many ended so far (see `restore`). */
  private mutating = 0
  private changes = 0
  private readonly box: SecretBox | undefined
  private readonly deliveryOptions: WebhookOptions

  constructor(
    private readonly bus: Bus,
    options: WebhookRegistryOptions = {},
  ) {
    const { logger, secretsKey, ...deliveryOptions } = options
    this.logger = logger ?? consoleLogger
    this.box = secretsKey !== undefined ? new SecretBox(secretsKey) : undefined
    this.deliveryOptions = deliveryOptions
  }

  /**
   * What a subscription is delivered with, as a string to compare: patterns, sender and meta,
   * with the secret and credential opened (sealing them again draws a fresh IV, so their sealed
   * forms differ each time) and hashed (no second plain copy of them is kept).
   */
  private fingerprintOf(patterns: readonly string[], sender: string | undefined, meta: WebhookMeta): string {
    const digest = (sealedOrPlain: string): string =>
      createHash('sha256').update(openSecret(this.box, sealedOrPlain)).digest('base64')
    const effective: WebhookMeta = { ...meta, secret: digest(meta.secret) }
    if (meta.credential !== undefined) effective.credential = digest(meta.credential)
    return fingerprint(patterns, sender, effective)
  }

  /** The meta to store: its secret and an app's credential sealed, with a `secretsKey`. */
  private sealed(meta: WebhookMeta): WebhookMeta {
    const box = this.box
    if (!box) return meta
    const out = { ...meta }
    if (!isSealed(out.secret)) out.secret = box.seal(out.secret)
    if (out.credential !== undefined && !isSealed(out.credential)) out.credential = box.seal(out.credential)
    return out
  }

  /** The secret a stored registration signs with, to keep it when registered again without one. */
  private storedSecret(record: SubscriptionInfo | undefined): string | undefined {
    const meta = record && metaOf(record)
    return meta && openSecret(this.box, meta.secret)
  }

  /** Registers (or re-registers) an app; handlers dropped from its manifest are unsubscribed. */
  async putApp(
    tenant: Tenant,
    app: string,
    input: AppRegistration,
  ): Promise<{ app: RegisteredApp; created: boolean }> {
    assertAppName(app)
    if (!isObject(input)) throw new HeraldError('invalid_option', 'an app registration must be an object')
    const { events } = parseManifest(input.manifest)
    const retry = checkRetry(input.retry)
    const credential = optionalText(input.credential, 'credential')
    const scoped = this.bus.scope(tenant)
    return this.exclusive(tenant, `app:${app}`, async () => {
      const existing = (await scoped.subscriptions()).filter(
        (record) => metaOf(record)?.kind === 'app' && metaOf(record)?.app === app,
      )
      const secret =
        optionalText(input.secret, 'secret') ?? this.storedSecret(existing[0]) ?? generateSecret()
      const base = { url: input.url, format: 'vtex' as const, secret }
      // Check every target before changing anything: a bad URL or secret fails the whole call.
      for (const handler of Object.keys(events)) assertWebhookTarget({ ...base, handler })
      const handlers: AppHandlerInfo[] = []
      for (const [handler, entry] of Object.entries(events)) {
        const meta: WebhookMeta = { kind: 'app', app, handler, ...base }
        if (credential !== undefined) meta.credential = credential
        if (retry !== undefined) meta.retry = retry
        const subscriptionId = appSubscriptionId(app, handler)
        const inStore = existing.find((record) => record.id === subscriptionId)
        this.attach(scoped, subscriptionId, entry.keys, entry.sender, meta, inStore)
        const info: AppHandlerInfo = { handler, subscriptionId, keys: entry.keys }
        if (entry.sender !== undefined) info.sender = entry.sender
        handlers.push(info)
      }
      const kept = new Set(handlers.map((handler) => handler.subscriptionId))
      for (const record of existing) if (!kept.has(record.id)) this.forget(scoped, record)
      await scoped.subscriptions() // resolves once the store has every change
      const registered: RegisteredApp = { app, url: input.url, handlers, secret }
      if (retry !== undefined) registered.retry = retry
      return { app: registered, created: existing.length === 0 }
    })
  }

  async getApp(tenant: Tenant, app: string): Promise<RegisteredApp | undefined> {
    return appInfo(app, await this.bus.scope(tenant).subscriptions())
  }

  async listApps(tenant: Tenant): Promise<RegisteredApp[]> {
    const records = await this.bus.scope(tenant).subscriptions()
    const names = new Set<string>()
    for (const record of records) {
      const meta = metaOf(record)
      if (meta?.kind === 'app' && meta.app !== undefined) names.add(meta.app)
    }
    return [...names].map((app) => appInfo(app, records)!)
  }

  /** Unsubscribes every handler of the app (their pending deliveries and dead letters go too). */
  deleteApp(tenant: Tenant, app: string): Promise<boolean> {
    const scoped = this.bus.scope(tenant)
    return this.exclusive(tenant, `app:${app}`, async () => {
      const mine = (await scoped.subscriptions()).filter(
        (record) => metaOf(record)?.kind === 'app' && metaOf(record)?.app === app,
      )
      for (const record of mine) this.forget(scoped, record)
      await scoped.subscriptions()
      return mine.length > 0
    })
  }

  /** Creates a webhook subscription, or updates the one with that id (its cursor is kept). */
  async putSubscription(
    tenant: Tenant,
    input: WebhookSubscriptionInput,
  ): Promise<{ subscription: WebhookSubscriptionInfo; created: boolean }> {
    if (!isObject(input)) throw new HeraldError('invalid_option', 'a subscription must be an object')
    const id = optionalText(input.id, 'id') ?? `wh_${ulid()}`
    if (id.startsWith('app:')) {
      throw new HeraldError(
        'invalid_option',
        'subscription ids starting with "app:" belong to apps (PUT /v1/apps)',
      )
    }
    const patterns = splitPatterns(input.patterns as string | string[])
    const sender = optionalText(input.sender, 'sender')
    const retry = checkRetry(input.retry)
    const format = input.format ?? 'herald'
    if (format !== 'herald' && format !== 'cloudevents') {
      throw new HeraldError('invalid_option', 'format must be "herald" or "cloudevents"')
    }
    const scoped = this.bus.scope(tenant)
    return this.exclusive(tenant, id, async () => {
      const existing = (await scoped.subscriptions()).find((record) => record.id === id)
      const existingMeta = existing && metaOf(existing)
      if (existing && existingMeta?.kind !== 'webhook') {
        throw new HeraldError(
          'duplicate_subscription',
          `subscription ${JSON.stringify(id)} exists and is not a webhook`,
        )
      }
      const secret = optionalText(input.secret, 'secret') ?? this.storedSecret(existing) ?? generateSecret()
      const meta: WebhookMeta = { kind: 'webhook', url: input.url, format, secret }
      if (retry !== undefined) meta.retry = retry
      assertWebhookTarget(meta)
      this.attach(scoped, id, patterns, sender, meta, existing)
      const record = (await scoped.subscriptions()).find((candidate) => candidate.id === id)
      if (!record) throw new HeraldError('store_unavailable', `subscription ${id} could not be stored`)
      return { subscription: { ...subscriptionInfo(record, meta), secret }, created: !existing }
    })
  }

  async listSubscriptions(tenant: Tenant): Promise<WebhookSubscriptionInfo[]> {
    const out: WebhookSubscriptionInfo[] = []
    for (const record of await this.bus.scope(tenant).subscriptions()) {
      const meta = metaOf(record)
      if (meta?.kind === 'webhook') out.push(subscriptionInfo(record, meta))
    }
    return out
  }

  async getSubscription(tenant: Tenant, id: string): Promise<WebhookSubscriptionInfo | undefined> {
    return (await this.listSubscriptions(tenant)).find((subscription) => subscription.id === id)
  }

  deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    const scoped = this.bus.scope(tenant)
    return this.exclusive(tenant, id, async () => {
      const record = (await scoped.subscriptions()).find((candidate) => candidate.id === id)
      if (!record || metaOf(record)?.kind !== 'webhook') return false
      this.forget(scoped, record)
      await scoped.subscriptions()
      return true
    })
  }

  /**
   * Attaches every webhook subscription found in the store (every tenant) that this process does
   * not deliver yet, or delivers with other settings than the store now holds: what a server does
   * at start, and then now and then (`syncEvery`) to follow registrations made by other processes
   * sharing the store. Returns how many were (re)attached; one that cannot be is logged and skipped.
   */
  async restore(): Promise<number> {
    if (this.mutating > 0) return 0
    const changes = this.changes
    const records = await this.bus.allSubscriptions()
    // A registration of this process ran meanwhile: what was read may be older than what it did.
    if (this.mutating > 0 || this.changes !== changes) return 0
    let restored = 0
    const present = new Set<string>()
    for (const record of records) {
      const meta = metaOf(record)
      if (!meta) continue
      const key = `${record.account}/${record.workspace}/${record.id}`
      present.add(key)
      let current: string
      try {
        current = this.fingerprintOf(record.patterns, record.sender, meta)
      } catch {
        current = fingerprint(record.patterns, record.sender, meta) // unreadable: attach says why
      }
      if (this.attachedAs.get(key)?.fingerprint === current) continue
      try {
        const scoped = this.bus.scope({ account: record.account, workspace: record.workspace })
        if (this.attach(scoped, record.id, record.patterns, record.sender, meta)) restored++
      } catch (error) {
        // Noted as seen, so that the next sync does not say it again until the record changes.
        this.attachedAs.set(key, { fingerprint: current })
        this.logger.error(
          { subscriptionId: record.id, account: record.account, error: describeError(error) },
          'a webhook subscription in the store could not be restored',
        )
      }
    }
    // Deleted by another process: stop delivering it here too.
    for (const key of [...this.attachedAs.keys()]) {
      if (present.has(key)) continue
      const [account, workspace, ...id] = key.split('/')
      this.bus
        .scope({ account: account!, workspace: workspace! })
        .unsubscribe([], undefined, { subscriberId: id.join('/'), keep: true })
      this.attachedAs.delete(key)
    }
    return restored
  }

  /** Runs `restore()` every `ms` until the returned function is called. */
  syncEvery(ms: number): () => void {
    const timer = setInterval(() => {
      this.restore().catch((error: unknown) =>
        this.logger.warn({ error: describeError(error) }, 'reading webhook subscriptions failed; will retry'),
      )
    }, ms)
    timer.unref?.()
    return () => clearInterval(timer)
  }

  /**
   * (Re)attaches one subscription in this process; returns false for a disabled one, which is
   * only detached. A subscription attached before is detached with `keep`, so the store keeps its
   * cursor and deliveries and only patterns, sender and meta change.
   *
   * A registration repeated with the same settings (each replica of an app registering at boot)
   * changes nothing when `inStore`, the record the store holds now, has them too: detaching
   * would abort the deliveries in flight, whose leases then hold them back until they expire.
   */
  private attach(
    scoped: EventBus,
    id: string,
    patterns: string[],
    sender: string | undefined,
    meta: WebhookMeta,
    inStore?: SubscriptionInfo,
  ): boolean {
    const key = `${tenantKey(scoped.tenant)}/${id}`
    const wanted = this.fingerprintOf(patterns, sender, meta)
    const storedMeta = inStore && metaOf(inStore)
    if (
      storedMeta !== undefined &&
      this.attachedAs.get(key)?.fingerprint === wanted &&
      this.fingerprintOf(inStore!.patterns, inStore!.sender, storedMeta) === wanted
    )
      return meta.disabled === undefined
    // Sealed once, when first stored; a sealed value read back from the store stays as it is.
    const stored = this.sealed(meta)
    const attachedAs: Attached = { fingerprint: wanted }
    if (stored.disabled !== undefined) {
      scoped.unsubscribe(patterns, undefined, { subscriberId: id, keep: true })
      this.attachedAs.set(key, attachedAs)
      return false
    }
    const target: WebhookTarget = {
      url: meta.url,
      format: meta.format,
      secret: openSecret(this.box, stored.secret),
    }
    if (meta.handler !== undefined) target.handler = meta.handler
    if (stored.credential !== undefined) target.credential = openSecret(this.box, stored.credential)
    const { onGone } = this.deliveryOptions
    const handler = webhookHandler(target, {
      ...this.deliveryOptions,
      onGone: (error, event) => {
        onGone?.(error, event)
        void this.disable(scoped, id, attachedAs, error)
      },
    })
    scoped.unsubscribe(patterns, undefined, { subscriberId: id, keep: true })
    this.attachedAs.set(key, attachedAs)
    scoped.subscribe(patterns, handler, {
      subscriberId: id,
      meta: { ...stored },
      ...(sender !== undefined ? { sender } : {}),
      ...(meta.retry !== undefined ? { retry: meta.retry } : {}),
    })
    return true
  }

  /**
   * The endpoint of `id` answered 410 Gone: stop delivering to it here, and mark it disabled in
   * the store so that other processes (at their next `restore`) and restarts leave it alone too.
   * Skipped when it was attached again since (registered anew, or changed by another process).
   */
  private disable(
    scoped: EventBus,
    id: string,
    attachedAs: Attached,
    gone: EndpointGoneError,
  ): Promise<void> {
    const key = `${tenantKey(scoped.tenant)}/${id}`
    const app = id.startsWith('app:') ? id.split(':')[1] : undefined
    return this.exclusive(scoped.tenant, app !== undefined ? `app:${app}` : id, async () => {
      if (this.attachedAs.get(key) !== attachedAs) return
      const record = (await scoped.subscriptions()).find((candidate) => candidate.id === id)
      const meta = record && metaOf(record)
      if (!record || !meta || this.attachedAs.get(key) !== attachedAs) return
      const disabled: DisabledEndpoint = { at: new Date().toISOString(), reason: gone.message }
      scoped.unsubscribe(record.patterns, undefined, { subscriberId: id, keep: true })
      const disabledMeta: WebhookMeta = { ...meta, disabled }
      this.attachedAs.set(key, {
        fingerprint: this.fingerprintOf(record.patterns, record.sender, disabledMeta),
      })
      await this.bus.store.openSubscription(
        {
          tenant: scoped.tenant,
          id,
          patterns: record.patterns,
          ...(record.sender !== undefined ? { sender: record.sender } : {}),
          meta: { ...disabledMeta },
        },
        Date.now(),
      )
      this.logger.warn(
        { subscriptionId: id, account: scoped.tenant.account, url: shownUrl(meta.url), reason: gone.message },
        'webhook endpoint answered 410 Gone; it is disabled (events are kept) until it is registered again',
      )
    }).catch((error: unknown) =>
      this.logger.error(
        { subscriptionId: id, error: describeError(error) },
        'disabling a gone webhook endpoint failed; it stays attached',
      ),
    )
  }

  /** Unsubscribes one subscription for good (it leaves the store). */
  private forget(scoped: EventBus, record: SubscriptionInfo): void {
    scoped.unsubscribe(record.patterns, undefined, { subscriberId: record.id })
    this.attachedAs.delete(`${tenantKey(scoped.tenant)}/${record.id}`)
  }

  /**
   * Runs `task` (a change to registrations) after every earlier task of this process with the
   * same name, holding the name in the store meanwhile: a registration reads what is stored, then
   * writes several records, and two servers sharing the store must not interleave those (one
   * app would end up with handlers of two manifests, or with two secrets).
   */
  private exclusive<T>(tenant: Tenant, name: string, task: () => Promise<T>): Promise<T> {
    const key = `${tenantKey(tenant)}/${name}`
    const previous = this.locks.get(key) ?? Promise.resolve()
    const counted = async (): Promise<T> => {
      this.mutating++
      try {
        const unlock = await this.bus.store.lock(tenant, `registration:${name}`, REGISTRATION_LOCK)
        try {
          return await task()
        } finally {
          await unlock().catch((error: unknown) =>
            this.logger.warn(
              { name, error: describeError(error) },
              'letting go of a registration lock failed; it lapses by itself',
            ),
          )
        }
      } finally {
        this.mutating--
        this.changes++
      }
    }
    const run = previous.then(counted, counted)
    const settled = run.then(
      () => undefined,
      () => undefined,
    )
    this.locks.set(key, settled)
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key)
    })
    return run
  }
}
