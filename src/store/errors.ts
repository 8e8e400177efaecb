/** The first line of an error's message, for one-line reports (falls back to its name). */
export function oneLine (err: unknown): string {
  if (err instanceof Error) {
    const msg = typeof err.message === 'string' && err.message !== '' ? err.message : err.name
    if (err instanceof AggregateError && err.errors.length > 0 && msg === err.name) return oneLine(err.errors[0])
    return msg.split('\n')[0]
  }
  return String(err).split('\n')[0]
}
