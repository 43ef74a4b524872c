// DeepSpace Workflows — researcher app (web).
// The shared shell (Nuxt UI, offline icon/font settings, gateway client, auth, layouts,
// login and error pages) is the layer in ./layers/shell; admin extends it too.
export default defineNuxtConfig({
  extends: ['./layers/shell'],

  app: {
    head: {
      title: 'DeepSpace Workflows'
    }
  },

  // `nuxt dev` reads PORT/HOST itself; this is only the fallback.
  devServer: {
    port: Number(process.env.PORT ?? 3000)
  }
})
