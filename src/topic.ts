import { HeraldError } from './errors.js'

/**
 * Topics and patterns (DESIGN §4).
 * - A topic is segments joined by `/`; a dot is an ordinary character (`user.created` is one segment).
 * - A pattern matches its own topic and every descendant (Volt MX parent/child); a `*` segment
 *   stands for exactly one segment; `*` alone matches everything.
 * - Lists given as one string are `;`-separated.
 */
export const MAX_TOPIC_LENGTH = 1024
export const MAX_TOPIC_SEGMENTS = 32
export const WILDCARD = '*'

// Whitespace and control characters, plus the list separator: never valid inside a name.
const FORBIDDEN = /[\s\u0000-\u001f\u007f;]/

const validTopics = new Set<string>()
const VALID_TOPIC_CACHE_LIMIT = 10_000

function checkName(value: unknown, kind: 'topic' | 'pattern'): string[] {
  const code = kind === 'topic' ? 'invalid_topic' : 'invalid_pattern'
  if (typeof value !== 'string') throw new HeraldError(code, `${kind} must be a string, got ${typeof value}`)
  if (value.length === 0) throw new HeraldError(code, `${kind} must not be empty`)
  if (value.length > MAX_TOPIC_LENGTH) {
    throw new HeraldError(
      code,
      `${kind} is ${value.length} characters long; the limit is ${MAX_TOPIC_LENGTH}`,
    )
  }
  const bad = FORBIDDEN.exec(value)
  if (bad) {
    throw new HeraldError(
      code,
      `${kind} ${JSON.stringify(value)} contains ${JSON.stringify(bad[0])} at ${bad.index}`,
    )
  }
  const segments = value.split('/')
  if (segments.length > MAX_TOPIC_SEGMENTS) {
    throw new HeraldError(code, `${kind} has ${segments.length} segments; the limit is ${MAX_TOPIC_SEGMENTS}`)
  }
  if (segments.includes('')) {
    throw new HeraldError(code, `${kind} ${JSON.stringify(value)} has an empty segment`)
  }
  return segments
}

/** The topic validated last; a string only once one was. */
let lastValid: string | symbol = Symbol('none')

/** Validates a topic (throws `invalid_topic`) and returns it. Valid topics are cached: topics repeat. */
export function assertTopic(value: unknown): string {
  if (value === lastValid) return value as string
  if (typeof value === 'string' && validTopics.has(value)) return (lastValid = value)
  const segments = checkName(value, 'topic')
  for (const segment of segments) {
    if (segment.includes(WILDCARD)) {
      throw new HeraldError(
        'invalid_topic',
        `topic ${JSON.stringify(value)} contains '*'; wildcards belong in patterns`,
      )
    }
  }
  if (validTopics.size >= VALID_TOPIC_CACHE_LIMIT) validTopics.clear()
  validTopics.add(value as string)
  return value as string
}

/** Validates a pattern (throws `invalid_pattern`) and returns its segments. */
export function parsePattern(value: unknown): string[] {
  const segments = checkName(value, 'pattern')
  for (const segment of segments) {
    if (segment !== WILDCARD && segment.includes(WILDCARD)) {
      throw new HeraldError(
        'invalid_pattern',
        `pattern ${JSON.stringify(value)}: '*' must be a whole segment (as in 'order/*/paid')`,
      )
    }
  }
  return segments
}

/**
 * Splits a `;`-separated list (or takes an array of such strings), trims blanks around entries,
 * drops duplicates, keeps order. Throws `invalid_pattern` on an empty list.
 */
export function splitPatterns(input: string | readonly string[], max = Infinity): string[] {
  const raw = typeof input === 'string' ? [input] : input
  if (!Array.isArray(raw) && typeof raw !== 'string') {
    throw new HeraldError('invalid_pattern', 'patterns must be a string or an array of strings')
  }
  // A Set, not a search of the list: a frame of 50,000 patterns must cost linear time, not square.
  const out = new Set<string>()
  for (const entry of raw) {
    if (typeof entry !== 'string')
      throw new HeraldError('invalid_pattern', `pattern must be a string, got ${typeof entry}`)
    for (const part of entry.split(';')) {
      const pattern = part.trim()
      if (pattern === '' || out.has(pattern)) continue
      parsePattern(pattern)
      out.add(pattern)
      if (out.size > max) throw new HeraldError('invalid_request', `at most ${max} patterns at once`)
    }
  }
  if (out.size === 0) throw new HeraldError('invalid_pattern', 'at least one pattern is required')
  return [...out]
}

/** Does `pattern` (already valid) match `topic` (already valid)? */
export function patternMatches(pattern: string, topic: string): boolean {
  if (pattern === WILDCARD || pattern === topic) return true
  const p = pattern.split('/')
  const t = topic.split('/')
  if (p.length > t.length) return false
  for (let i = 0; i < p.length; i++) {
    if (p[i] !== WILDCARD && p[i] !== t[i]) return false
  }
  return true
}

/** A predicate for a fixed set of patterns; used where one subscription tests events one by one. */
export function compileMatcher(patterns: readonly string[]): (topic: string) => boolean {
  if (patterns.includes(WILDCARD)) return () => true
  if (patterns.length > SCAN_PATTERNS_UP_TO) {
    // A stream may hold a thousand patterns: scanning them all for each event would let one
    // client make every publish slow. The trie walks the topic's segments once instead.
    const index = new TopicIndex<true>()
    for (const pattern of patterns) index.add(pattern, true)
    return (topic) => index.match(topic).length > 0
  }
  const list = [...patterns]
  return (topic) => {
    for (const pattern of list) if (patternMatches(pattern, topic)) return true
    return false
  }
}

/** Up to this many patterns, testing each in turn is cheaper than building and walking a trie. */
const SCAN_PATTERNS_UP_TO = 8

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>
  star: TrieNode<T> | undefined
  /** entries whose pattern ends here: they match this topic and all its descendants */
  entries: Set<T>
}

function newNode<T>(): TrieNode<T> {
  return { children: new Map(), star: undefined, entries: new Set() }
}

/**
 * The matching index: a trie on segments. A lookup walks the topic's segments once, following
 * the literal child and the `*` child at each level, so its cost depends on the topic and the
 * patterns that share its prefix, not on how many other patterns exist. Results are cached per
 * topic until the index changes.
 */
export class TopicIndex<T> {
  private readonly root: TrieNode<T> = newNode()
  private readonly cache = new Map<string, T[]>()
  private static readonly CACHE_LIMIT = 10_000
  private count = 0

  get size(): number {
    return this.count
  }

  add(pattern: string, entry: T): void {
    let node = this.root
    for (const segment of parsePattern(pattern)) {
      if (segment === WILDCARD) node = node.star ??= newNode()
      else {
        let next = node.children.get(segment)
        if (!next) node.children.set(segment, (next = newNode()))
        node = next
      }
    }
    if (!node.entries.has(entry)) {
      node.entries.add(entry)
      this.count++
    }
    this.forget()
  }

  remove(pattern: string, entry: T): void {
    const path: TrieNode<T>[] = [this.root]
    const segments = parsePattern(pattern)
    let node: TrieNode<T> | undefined = this.root
    for (const segment of segments) {
      node = segment === WILDCARD ? node.star : node.children.get(segment)
      if (!node) return
      path.push(node)
    }
    if (!node.entries.delete(entry)) return
    this.count--
    this.forget()
    // Prune empty branches so that removed subscriptions cost nothing on later lookups.
    for (let i = segments.length; i > 0; i--) {
      const child = path[i]!
      if (child.entries.size > 0 || child.children.size > 0 || child.star) break
      const parent = path[i - 1]!
      const segment = segments[i - 1]!
      if (segment === WILDCARD) parent.star = undefined
      else parent.children.delete(segment)
    }
  }

  /** The topic matched last and its answer: consecutive events mostly share their topic. */
  private lastTopic: string | undefined
  private lastMatch: readonly T[] = []

  private forget(): void {
    this.cache.clear()
    this.lastTopic = undefined
  }

  /** Entries whose pattern matches `topic`, each once, in no particular order. */
  match(topic: string): readonly T[] {
    // The same topic as last time: skip even the cache's hashing.
    if (topic === this.lastTopic) return this.lastMatch
    const cached = this.cache.get(topic)
    if (cached) {
      this.lastTopic = topic
      return (this.lastMatch = cached)
    }
    const found = new Set<T>()
    let frontier: TrieNode<T>[] = [this.root]
    for (const segment of topic.split('/')) {
      const next: TrieNode<T>[] = []
      for (const node of frontier) {
        const literal = node.children.get(segment)
        if (literal) next.push(literal)
        if (node.star) next.push(node.star)
      }
      for (const node of next) for (const entry of node.entries) found.add(entry)
      if (next.length === 0) break
      frontier = next
    }
    const result = [...found]
    if (this.cache.size >= TopicIndex.CACHE_LIMIT) this.cache.clear()
    this.cache.set(topic, result)
    this.lastTopic = topic
    return (this.lastMatch = result)
  }
}
