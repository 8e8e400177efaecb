import { splitEncoded, type EncodedRecords } from './codec.js'
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
  // the stored records as they are (the encoder reads only their FileRecord fields; a
  // copy of each cost a sending node 2-3% of its event loop in a burst of new files)
  const groups = splitEncoded(records, maxBytes, (r, err) => {
    leftOut(`${quotePath(r.path)} (seq ${(r as FileRecord & { seq: number }).seq}) will not replicate: ${err.message}`)
  })
  return groups.map((g) => ({ records: g, seqs: g.records.map((r) => (r as FileRecord & { seq: number }).seq) }))
}
