import { splitEncoded, type EncodedRecords } from './codec.js'
import { toFileRecord } from '../store/store.js'
import { quotePath } from '../store/paths.js'
import type { FileRecord } from '../store/types.js'

/** One message's worth of stored records, encoded, with the seq each was stored under. */
export interface OutGroup {
  records: EncodedRecords
  seqs: number[]
}

/**
 * Stored records, in order, in groups for messages of at most `maxBytes`. A record that no
 * message can carry (it breaks a wire rule, or is larger than a message) is left out, and
 * `leftOut` gets a line saying so: sent as part of the rest, it failed the whole message,
 * and with it every announcement of its batch and every catch-up from this node.
 */
export function splitStored (records: Array<FileRecord & { seq: number }>, maxBytes: number, leftOut: (line: string) => void): OutGroup[] {
  const seqOf = new Map<object, number>()
  const files = records.map((r) => {
    const f = toFileRecord(r)
    seqOf.set(f, r.seq)
    return f
  })
  const groups = splitEncoded(files, maxBytes, (r, err) => {
    leftOut(`${quotePath(r.path)} (seq ${seqOf.get(r) ?? '?'}) will not replicate: ${err.message}`)
  })
  return groups.map((g) => ({ records: g, seqs: g.records.map((r) => seqOf.get(r) ?? 0) }))
}
