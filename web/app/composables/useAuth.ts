export interface LoginCredentials {
  email: string
  password: string
}

/** Sign-in against the gateway. The session itself is a cookie the gateway sets. */
export function useAuth() {
  const gateway = useGateway()

  async function login(credentials: LoginCredentials) {
    return await gateway.post<unknown>('/api/v1/auth/login', { ...credentials }, { retry: 0 })
  }

  return { login }
}
