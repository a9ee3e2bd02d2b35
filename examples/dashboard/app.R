# A small Shiny dashboard: a simulated random walk whose length the user picks.
library(shiny)

ui <- fluidPage(
  titlePanel("Random walk"),
  sidebarLayout(
    sidebarPanel(
      sliderInput("steps", "Steps", min = 10, max = 1000, value = 100),
      textOutput("user")
    ),
    mainPanel(
      plotOutput("walk"),
      textOutput("summary")
    )
  )
)

server <- function(input, output, session) {
  walk <- reactive({
    set.seed(input$steps)
    cumsum(rnorm(input$steps))
  })
  output$walk <- renderPlot(plot(walk(), type = "l", xlab = "step", ylab = "value"))
  output$summary <- renderText(sprintf("steps=%d final=%.3f", input$steps, tail(walk(), 1)))
  # Wharf tells the app who is logged in.
  output$user <- renderText({
    user <- session$request$HTTP_X_WHARF_USER
    if (is.null(user)) "not logged in" else paste("signed in as", user)
  })
}

shinyApp(ui, server)
