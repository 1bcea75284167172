import { HeraldError } from '../errors.js'

/**
 * A publisher id was used within its dedupe window for an event of another topic. Dropping the
 * second as a repeat would lose it silently (and let a token that may publish one topic squat
 * the ids another topic's publisher will use), so every store refuses the emit instead.
 */
export function idConflict(id: string, earlierTopic: string | undefined, topic: string): HeraldError {
  return new HeraldError(
    'id_conflict',
    `id ${JSON.stringify(id)} was used within the dedupe window for ${
      earlierTopic === undefined
        ? 'an event of another topic'
        : `an event of topic ${JSON.stringify(earlierTopic)}`
    }, not ${JSON.stringify(topic)}; nothing of this emit was stored`,
    { id },
  )
}
