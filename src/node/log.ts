/**
 * The node's logs: pino, one line per event, on stderr (stdout is kept for what commands
 * print). A terminal gets pino-pretty lines (colorless when NO_COLOR is set); anything
 * else gets JSON lines (`{"level":"warn","time":...,"msg":...,"peer":...}`).
 *
 * Modules keep logging through the small LogFn interface; `loggerFn` adapts a pino logger
 * to it, so a call site can add fields (peer, path) without knowing about pino.
 */
import { pino, type Logger, type DestinationStream } from 'pino'
import pinoPretty from 'pino-pretty'

export const LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type Level = typeof LEVELS[number]

/** Structured fields of a log event: `peer`, `path`, `err`, ... */
export type LogFields = Record<string, unknown>

export type LogFn = (level: Level, msg: string, fields?: LogFields) => void

export function isLevel (s: string): s is Level {
  return (LEVELS as readonly string[]).includes(s)
}

export interface LoggerOptions {
  /** Least severe level written. @default 'info' */
  level?: Level
  /** Pretty lines instead of JSON. @default process.stderr.isTTY */
  pretty?: boolean
  /** Colors in pretty lines. @default unless NO_COLOR is set */
  color?: boolean
  /** Where lines go (tests). @default stderr (fd 2), written synchronously */
  destination?: DestinationStream
}

/** A pino logger writing one line per event to stderr. */
export function createLogger (opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info'
  const pretty = opts.pretty ?? process.stderr.isTTY === true
  const base = {
    level,
    base: undefined,
    // level names rather than numbers in JSON lines: `"level":"warn"`
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  if (opts.destination != null) return pino(base, opts.destination)
  if (pretty) {
    const color = opts.color ?? (process.env.NO_COLOR == null || process.env.NO_COLOR === '')
    const stream = pinoPretty({
      sync: true,
      destination: 2,
      singleLine: true,
      colorize: color,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
      ignore: 'pid,hostname'
    })
    // pino-pretty expects numeric levels: keep pino's default level formatter here
    return pino({ level, base: undefined }, stream)
  }
  return pino(base, pino.destination({ fd: 2, sync: true }))
}

/** The LogFn interface over a pino logger. */
export function loggerFn (logger: Logger): LogFn {
  return (level, msg, fields) => {
    if (fields == null) logger[level](msg)
    else logger[level](fields, msg)
  }
}

export interface LogEntry { at: string, level: Level, msg: string }

/** The last few warnings and errors, for status. */
export class RecentErrors {
  private readonly entries: LogEntry[] = []
  private readonly size: number

  constructor (size = 10) {
    this.size = size
  }

  add (level: Level, msg: string, fields?: LogFields): void {
    if (level !== 'warn' && level !== 'error') return
    const where = [fields?.peer, fields?.path].filter((v) => typeof v === 'string' && !msg.includes(v))
    this.entries.push({ at: new Date().toISOString(), level, msg: where.length > 0 ? `${msg} (${where.join(', ')})` : msg })
    if (this.entries.length > this.size) this.entries.splice(0, this.entries.length - this.size)
  }

  list (): LogEntry[] {
    return this.entries.map((e) => ({ ...e }))
  }
}
