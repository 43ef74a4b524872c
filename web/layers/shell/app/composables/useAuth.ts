export interface LoginCredentials {
  email: string
  password: string
}

/**
 * Sign-in against the gateway. The session itself is an HTTP-only cookie the gateway
 * sets, so the client keeps nothing but the last failure.
 */
export function useAuth() {
  const gateway = useGateway()
  const pending = ref(false)
  const error = ref<GatewayError | null>(null)

  async function login(credentials: LoginCredentials): Promise<boolean> {
    pending.value = true
    error.value = null
    try {
      await gateway.post('/api/v1/auth/login', { ...credentials }, { retry: 0 })
      return true
    } catch (cause) {
      error.value = toGatewayError(cause)
      return false
    } finally {
      pending.value = false
    }
  }

  return { login, pending: readonly(pending), error: readonly(error) }
}
