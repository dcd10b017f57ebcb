// An error the runtime reports to its caller as runc would: one line in the --log file
// ({"level":"error","msg":...,"time":...}) and a non-zero exit status.
export class OciError extends Error {
  constructor(
    message: string,
    /** The exit status (runc exits 1 for every failure). */
    readonly status = 1,
  ) {
    super(message)
    this.name = 'OciError'
  }
}
