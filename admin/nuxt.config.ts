// DeepSpace Workflows — operator and finance console (admin).
// The shared shell (Nuxt UI, offline icon/font settings, gateway client, auth, layouts,
// login and error pages) is the layer in ../web/layers/shell, which web extends too.
export default defineNuxtConfig({
  extends: ['../web/layers/shell'],

  app: {
    head: {
      title: 'DeepSpace Admin'
    }
  },

  // `nuxt dev` reads PORT/HOST itself; this is only the fallback.
  devServer: {
    port: Number(process.env.PORT ?? 3001)
  }
})
