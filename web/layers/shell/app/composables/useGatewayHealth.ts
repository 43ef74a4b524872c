export type GatewayHealthStatus = 'checking' | 'online' | 'offline'

const POLL_MS = 15_000
const TIMEOUT_MS = 5_000

/**
 * Gateway liveness from `GET /healthz`, shared by every caller and polled while at
 * least one component that uses it is mounted.
 */
export function useGatewayHealth() {
  const gateway = useGateway()
  const status = useState<GatewayHealthStatus>('gateway-health', () => 'checking')
  const checkedAt = useState<number | null>('gateway-health-at', () => null)

  async function check() {
    try {
      await gateway.get<{ status: string }>('/healthz', { timeout: TIMEOUT_MS, retry: 0 })
      status.value = 'online'
    } catch {
      status.value = 'offline'
    } finally {
      checkedAt.value = Date.now()
    }
  }

  if (getCurrentInstance()) {
    let timer: ReturnType<typeof setInterval> | undefined
    onMounted(() => {
      void check()
      timer = setInterval(() => void check(), POLL_MS)
    })
    onBeforeUnmount(() => clearInterval(timer))
  }

  return { status: readonly(status), checkedAt: readonly(checkedAt), check }
}
