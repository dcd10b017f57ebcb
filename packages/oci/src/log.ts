// The --log file: JSON lines as logrus writes them for runc (--log-format json), which containerd's
// shim reads back to tell the user why a call failed (it shows the last "error" line). Text format
// ("--log-format text") writes logrus's key=value form. Without --log, stderr.
import { appendFileSync } from 'node:fs'

export type Level = 'error' | 'warning' | 'info' | 'debug'

export interface Logger {
  log(level: Level, msg: string): void
}

export function openLog(path: string | undefined, format: string): Logger {
  return {
    log(level, msg) {
      const time = new Date().toISOString()
      const line =
        format === 'json'
          ? `${JSON.stringify({ level, msg, time })}\n`
          : `time="${time}" level=${level} msg=${JSON.stringify(msg)}\n`
      if (path === undefined) {
        process.stderr.write(line)
        return
      }
      try {
        appendFileSync(path, line)
      } catch {
        process.stderr.write(line)
      }
    },
  }
}
