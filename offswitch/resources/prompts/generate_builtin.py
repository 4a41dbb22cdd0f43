"""Generate offswitch's built-in prompt set (``builtin.jsonl``) from hand-written templates and slots.

Run once after editing the lists below; the output is committed and loaded at run time::

    python -m offswitch.resources.prompts.generate_builtin          # (re)write builtin.jsonl
    python -m offswitch.resources.prompts.generate_builtin --check  # exit 1 if the file is stale

Every template, topic and slot value here was written for offswitch (Apache-2.0 / CC0, see
LICENSE.md). Selection and order come from SHA-256 of fixed salts, not from ``random``, so the
output is byte-identical on every Python version and platform. A unit test re-runs
:func:`render` and compares it with the committed file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT = Path(__file__).with_name("builtin.jsonl")
ORDER_SALT = "offswitch/builtin-prompts/v1/order"
MAX_WORDS = 70


@dataclass(frozen=True)
class Template:
    """A format string over named slots; every combination of slot values is a candidate."""

    text: str
    slots: dict[str, tuple] = field(default_factory=dict)

    def candidates(self) -> list[str]:
        names = list(self.slots)
        out = []
        for values in itertools.product(*(self.slots[name] for name in names)):
            out.append(self.text.format(**dict(zip(names, values))))
        return out


@dataclass(frozen=True)
class Family:
    name: str
    quota: int
    templates: tuple[Template, ...]


def T(text: str, **slots) -> Template:
    return Template(text, {name: tuple(values) for name, values in slots.items()})


# ---------------------------------------------------------------------------------------------
# Slot lists. Coupled values (a pair that must go together) are tuples indexed in the template.
# ---------------------------------------------------------------------------------------------

CONCEPTS = (
    "photosynthesis", "inflation", "compound interest", "the greenhouse effect", "plate tectonics",
    "natural selection", "supply and demand", "machine learning", "blockchain", "the water cycle",
    "opportunity cost", "quantum entanglement", "the theory of relativity", "herd immunity", "the placebo effect",
    "cognitive dissonance", "the scientific method", "black holes", "DNA replication", "the immune system",
    "a recession", "the stock market", "cryptography", "the Doppler effect", "entropy",
    "the Pythagorean theorem", "democracy", "the separation of powers", "the circular economy", "carbon offsets",
    "the Big Bang theory", "neural networks", "cloud computing", "the nitrogen cycle", "osmosis",
    "the law of diminishing returns", "game theory", "the tragedy of the commons", "confirmation bias", "circadian rhythms",
    "antibiotic resistance", "the carbon cycle", "electromagnetic induction", "the Fibonacci sequence", "probability",
    "climate change", "ocean acidification", "the gig economy", "universal basic income", "public key encryption",
    "the Renaissance", "the Cold War", "impressionism", "stoicism", "utilitarianism",
    "the Socratic method", "a sonnet", "irony", "the hero's journey", "existentialism",
    "the Internet of Things", "5G networks", "virtual memory", "open-source software", "version control",
    "the electoral college", "gerrymandering", "globalization", "a trade deficit", "interest rates",
    "fermentation", "the speed of light", "gravity", "magnetism", "radioactivity",
    "biodiversity", "an ecosystem", "a food chain", "the ozone layer", "erosion",
    "mindfulness", "emotional intelligence", "the growth mindset", "the sunk cost fallacy", "the Dunning-Kruger effect",
    "gross domestic product", "a mortgage", "an index fund", "diversification", "a credit score",
)

PROCESSES = (
    "a refrigerator", "a solar panel", "the human heart", "a vaccine", "GPS navigation",
    "a search engine", "an electric motor", "a nuclear power plant", "the internet", "a jet engine",
    "a microwave oven", "Wi-Fi", "a touchscreen", "a credit card payment", "the process of a bill becoming a law in the United States",
    "the human eye", "memory in the brain", "a rainbow", "airplane lift", "a lithium-ion battery",
    "a compiler", "email delivery", "public transport scheduling", "a 3D printer", "noise-cancelling headphones",
    "a wind turbine", "a thermostat", "the digestive system", "hurricane formation", "a volcanic eruption",
    "an elevator", "a camera lens", "a hybrid car", "a blood test", "a heat pump",
)

AUDIENCES = ("a ten-year-old", "a high school student", "a complete beginner", "a busy executive", "my grandmother", "someone who has never studied science")

WHY_QUESTIONS = (
    "is the sky blue", "do we have seasons", "does ice float on water", "do cats purr", "do onions make people cry",
    "do leaves change color in autumn", "is the ocean salty", "do we dream", "do we get goosebumps", "does bread go stale",
    "do airplanes leave white trails in the sky", "do we yawn", "is the Moon sometimes visible during the day", "do some people get seasick", "does metal feel colder than wood",
    "do stars twinkle", "do we need sleep", "do bubbles form in boiling water", "does the Leaning Tower of Pisa lean", "do birds migrate",
    "is it hotter at the equator", "do we hiccup", "does coffee keep people awake", "do tides happen", "do our fingers wrinkle in water",
)

HISTORICAL_EVENTS = (
    "the French Revolution", "World War I", "the Great Depression", "the 2008 financial crisis", "the fall of the Roman Empire",
    "the Industrial Revolution", "the American Civil War", "the collapse of the Soviet Union", "the Black Death", "the Protestant Reformation",
    "the Cuban Missile Crisis", "the Dust Bowl", "the Russian Revolution", "the Irish Potato Famine", "the dot-com bubble",
)

ROLES = (
    ("mitochondria", "a cell"), ("the liver", "the human body"), ("bees", "agriculture"), ("central banks", "the economy"),
    ("enzymes", "digestion"), ("the Supreme Court", "the United States government"), ("fungi", "a forest ecosystem"),
    ("the hippocampus", "memory"), ("a CPU cache", "computer performance"), ("the Moon", "ocean tides"),
    ("wetlands", "flood control"), ("the ozone layer", "protecting life on Earth"), ("vitamin D", "bone health"),
    ("a router", "a home network"), ("plankton", "the ocean food web"),
)

NUMBERS = ("three", "five", "seven", "ten")

LIST_THINGS = (
    "fruits that are high in vitamin C", "famous inventors and their inventions", "programming languages used for data analysis",
    "healthy snacks for work", "board games for a family night", "ways to reduce household waste",
    "common symptoms of dehydration", "classic movies everyone should watch", "houseplants that are hard to kill",
    "benefits of regular exercise", "ways to improve a website's loading speed", "questions to ask in a job interview",
    "tips for writing clear emails", "signs of burnout", "free ways to learn a new skill",
    "renewable energy sources", "essential items for a camping trip", "things to check before buying a used car",
    "famous women scientists", "ancient wonders of the world", "foods that are rich in protein",
    "ways to stay focused while studying", "uses for baking soda around the house", "reasons people learn a second language",
    "good habits for a morning routine", "mistakes to avoid when starting a business", "ways to make a small room look bigger",
    "birds that cannot fly", "low-cost date ideas", "things to pack for a beach holiday",
    "skills every software developer should have", "ways to save energy at home", "common logical fallacies",
    "inventions that changed the world", "herbs that are easy to grow indoors", "strategies for managing stress",
)

OCCASIONS = (
    "a rainy Saturday afternoon", "a tenth wedding anniversary", "a team-building activity", "a science fair project",
    "a birthday party for a seven-year-old", "a retirement gift for a coworker", "a first date", "a family reunion",
    "a school fundraiser", "a small garden", "a blog about personal finance", "a short film",
    "a mobile app for students", "a weekend project with my kids", "a New Year's resolution", "a podcast episode about history",
    "a farewell party for a colleague", "a baby shower", "a cheap weekend getaway", "a book club meeting",
)

CATEGORIES = (
    "countries in South America", "planets in our solar system", "noble gases", "plays by Shakespeare",
    "mammals that live in the ocean", "primary colors", "Olympic sports", "musical instruments in an orchestra",
    "bones in the human arm", "rivers in Africa", "Greek gods", "famous composers of classical music",
    "types of clouds", "novels by Charles Dickens", "dog breeds that are good with children", "major world religions",
    "layers of the Earth's atmosphere", "sorting algorithms", "programming paradigms", "famous paintings by Vincent van Gogh",
)

MISTAKE_ACTIVITIES = (
    "learning to drive", "writing a resume", "baking bread", "investing in stocks", "training a puppy",
    "giving a presentation", "learning to code", "running a meeting", "painting a room", "starting a diet",
    "negotiating a salary", "planning a wedding", "studying for exams", "writing a novel", "taking photos with a phone",
)

NAMING_TARGETS = (
    "a coffee shop", "a golden retriever puppy", "a podcast about gardening", "a bakery that sells sourdough bread",
    "a fantasy kingdom", "a team of software engineers", "a productivity app", "a black cat",
    "a food truck selling tacos", "a hiking club", "a children's book character who is a dragon", "a small bookstore",
    "a band that plays jazz", "a newsletter about science", "a sailboat", "a yoga studio",
)

CHECKLISTS = (
    "moving into a new apartment", "a camping trip", "the first day at a new job", "hosting a barbecue",
    "preparing for a job interview", "closing up a summer house for the winter", "launching a website",
    "traveling abroad with kids", "a wedding day", "selling a used car", "starting a home renovation", "a long flight",
)

FEATURES = (
    ("features", "a good resume"), ("characteristics", "Gothic architecture"), ("causes", "climate change"),
    ("symptoms", "the flu"), ("benefits", "meditation"), ("components", "a computer"), ("parts", "a flower"),
    ("stages", "the product development process"), ("principles", "good user interface design"),
    ("elements", "a short story"), ("functions", "the kidneys"), ("risks", "social media for children"),
)

COMPARE_PAIRS = (
    ("cats", "dogs"), ("renting", "buying a home"), ("Python", "JavaScript"), ("TCP", "UDP"),
    ("a virus", "a bacterium"), ("weather", "climate"), ("mitosis", "meiosis"), ("stocks", "bonds"),
    ("baking soda", "baking powder"), ("a simile", "a metaphor"), ("socialism", "capitalism"), ("RAM", "storage"),
    ("alligators", "crocodiles"), ("tea", "coffee"), ("an LLC", "a sole proprietorship"), ("nuclear power", "solar power"),
    ("Roman numerals", "Arabic numerals"), ("a hurricane", "a tornado"), ("empathy", "sympathy"), ("a debit card", "a credit card"),
    ("the Greek gods", "the Roman gods"), ("SQL", "NoSQL databases"), ("butter", "margarine"), ("a republic", "a democracy"),
    ("running", "swimming"), ("e-books", "printed books"), ("Mars", "Venus"), ("frogs", "toads"),
    ("a psychologist", "a psychiatrist"), ("machine learning", "traditional programming"), ("jazz", "blues"), ("baroque", "classical music"),
    ("AC", "DC current"), ("a lake", "a pond"), ("Git", "SVN"), ("the Arctic", "the Antarctic"),
    ("an introvert", "an extrovert"), ("modern art", "contemporary art"), ("leasing", "buying a car"), ("HTTP", "HTTPS"),
    ("a crocodile", "a lizard"), ("white rice", "brown rice"), ("a comet", "an asteroid"), ("weight training", "cardio"),
    ("a memoir", "an autobiography"), ("Linux", "Windows"), ("a sprint", "a marathon"), ("a hypothesis", "a theory"),
)

WHICH_BETTER = (
    ("a beginner photographer", "a mirrorless camera", "a DSLR"), ("a small business website", "WordPress", "a custom-built site"),
    ("learning to code", "Python", "JavaScript"), ("a long road trip", "an electric car", "a hybrid"),
    ("storing family photos", "cloud storage", "an external hard drive"), ("a student on a budget", "a laptop", "a tablet"),
    ("losing weight", "running", "cycling"), ("a family with young kids", "a house with a garden", "an apartment in the city"),
    ("taking notes in class", "a notebook", "a laptop"), ("a first pet", "a cat", "a dog"),
    ("saving for retirement", "an index fund", "individual stocks"), ("a weekend hobby", "painting", "playing guitar"),
    ("a rainy climate", "a wooden fence", "a vinyl fence"), ("a data analysis project", "Excel", "Python"),
)

PASSAGES = (
    "The city council voted on Tuesday to expand the bike lane network by forty kilometers over the next three years. Supporters say it will reduce traffic and pollution, while some shop owners worry about losing parking spaces in front of their stores.",
    "Honeybees communicate the location of food through a movement called the waggle dance. The angle of the dance shows the direction relative to the sun, and its length tells other bees how far away the flowers are.",
    "Our quarterly sales rose by twelve percent, driven mostly by strong demand for the new model. However, shipping delays in the last month meant that several large orders could not be delivered before the quarter ended.",
    "The library will close for renovations from June 1 to August 15. During this time, books can still be returned through the drop box, and a temporary reading room will open in the community center on Elm Street.",
    "Researchers found that people who took a short walk after meals had lower blood sugar levels than those who stayed seated. Even a walk of two to five minutes made a measurable difference, the study reported.",
    "The Great Wall of China was not built all at once. It is a series of walls and fortifications constructed by different dynasties over more than two thousand years to protect against invasions from the north.",
    "Many people believe that goldfish have a memory of only three seconds. In fact, experiments have shown that goldfish can remember things for months and can even be trained to respond to sounds and colors.",
    "The startup announced that it had raised twenty million dollars to build software that helps farmers predict crop yields. The company plans to hire fifty engineers and expand into South America next year.",
    "After three days of heavy rain, the river rose above its banks and flooded several streets in the old town. Emergency crews evacuated about two hundred residents, and schools in the area will remain closed until Monday.",
    "Sleep plays a key role in learning. While we sleep, the brain replays and strengthens the memories formed during the day, which is why students who sleep well before an exam often perform better than those who stay up late.",
    "Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, while the third pumps it to the rest of the body. Their blood is blue because it uses copper rather than iron to carry oxygen.",
    "The new phone has a larger screen, a faster processor and a battery that lasts almost two days. Reviewers praised its camera but criticized the high price and the decision to remove the headphone jack.",
    "Volunteers planted more than five thousand trees along the highway last weekend. The project, organized by a local school, aims to reduce noise for nearby homes and provide shade for cyclists in the summer.",
    "The museum's new exhibition brings together over one hundred paintings from private collections that have never been shown to the public. Tickets must be booked online in advance, and the show runs until the end of March.",
    "Remote work has changed how companies think about office space. Many firms are now renting smaller offices and using them mainly for meetings and team events, while employees do focused work from home.",
    "A healthy breakfast does not have to take long. Oatmeal with fruit, yogurt with nuts, or whole-grain toast with an egg can all be prepared in under ten minutes and keep you full until lunch.",
    "The Amazon rainforest produces a large share of the world's oxygen and is home to millions of species. Deforestation for farming and logging threatens this ecosystem, and scientists warn that parts of it may turn into savanna.",
    "The team lost the first two games of the season but won the next eight in a row. Their coach credits the turnaround to better communication on the field and an extra practice session each week.",
    "Starting next month, customers will be able to pay their electricity bills through the mobile app. The company says the change will save paper and make it easier for people to track their energy use.",
    "Ancient Egyptians used a paper-like material called papyrus, made from a plant that grew along the Nile. Strips of the plant were pressed together and dried in the sun to create sheets for writing.",
    "The restaurant is small and often crowded, but the food is excellent. The pasta is made fresh every morning, the desserts are generous, and the staff remember regular customers by name.",
    "Scientists have discovered a new species of frog in the mountains of Peru. The frog is smaller than a fingernail and lives in the moss on the forest floor, which made it hard to notice until now.",
    "The company will introduce a four-day work week as a six-month trial. Employees will work the same number of hours over four days, and managers will measure whether productivity and job satisfaction change.",
    "Learning a musical instrument as an adult is harder than as a child, but far from impossible. Regular short practice sessions, patience and a good teacher matter more than natural talent.",
    "The bridge, which was built in 1932, will be closed for repairs for six weeks. Drivers are advised to use the northern bypass, and extra buses will run between the two sides of the river during rush hour.",
    "Water expands when it freezes, which is why pipes can burst in cold weather. To prevent this, homeowners are advised to insulate exposed pipes and keep a small amount of water running on very cold nights.",
    "The novel follows a young woman who inherits a crumbling hotel on the coast of Maine. As she tries to restore it, she uncovers letters that reveal a family secret kept hidden for fifty years.",
    "Electric scooters became popular in many cities almost overnight. They offer a quick way to travel short distances, but cities have struggled with scooters left on sidewalks and with injuries to riders.",
    "A good night's sleep starts hours before bed. Experts recommend avoiding caffeine in the afternoon, keeping the bedroom cool and dark, and putting away screens at least thirty minutes before sleeping.",
    "The vote to approve the new park was close, with five members in favor and four against. Those who opposed it said the money would be better spent on repairing roads and the public swimming pool.",
    "Marie Curie was the first person to win Nobel Prizes in two different sciences, physics and chemistry. Her research on radioactivity laid the foundation for modern cancer treatments and nuclear physics.",
    "Our hiking group will meet at the north parking lot at 7 a.m. on Saturday. The trail is about twelve kilometers long, so please bring plenty of water, a packed lunch and sturdy shoes.",
    "Many languages have borrowed words from each other. English, for example, took 'ballet' from French, 'piano' from Italian, 'tsunami' from Japanese and 'kindergarten' from German.",
    "The software update fixes several security problems and improves battery life. Users are encouraged to install it as soon as possible, although the download is large and may take some time on slow connections.",
    "Composting turns food scraps and garden waste into rich soil. A simple compost pile needs a mix of green material such as vegetable peels, brown material such as dry leaves, air and a little moisture.",
)

SUMMARY_TEMPLATES = (
    "Summarize the following text in one sentence: {passage}",
    "Give me a short summary of this paragraph: {passage}",
    "What is the main idea of this passage? {passage}",
    "Summarize this in ten words or fewer: {passage}",
    "Read the text below and list its key points. {passage}",
    "Write a headline for this paragraph: {passage}",
    "What is the tone of the following text? {passage}",
    "Turn this paragraph into three bullet points: {passage}",
)

SENTENCES = (
    "The meeting has been moved to Thursday because the manager is traveling.",
    "We need the final report by the end of the week.",
    "The kids broke the window while they were playing football.",
    "I think we should probably try to maybe finish this project sooner rather than later.",
    "The company hired three new engineers last month.",
    "Our team completed the migration ahead of schedule.",
    "Can you send me the file when you get a chance?",
    "The chef prepared a delicious meal for the guests.",
    "The storm knocked down several trees in the park.",
    "I'm really sorry, but I won't be able to come to your party on Saturday.",
    "The results of the experiment were not what the researchers expected.",
    "Due to the fact that it was raining, the game was cancelled.",
    "The cat knocked the vase off the table.",
    "Please remember to turn off the lights when you leave the office.",
    "The new policy will affect all employees starting in January.",
    "The committee rejected the proposal after a long discussion.",
    "She wrote the entire novel in just six months.",
    "Thanks for your help yesterday, it made a huge difference.",
    "The price of the tickets has gone up again this year.",
    "We regret to inform you that your application was not successful.",
    "The teacher explained the lesson very clearly.",
    "In my opinion, the movie was way too long and kind of boring.",
    "The engineers will test the new bridge next week.",
    "At this point in time, we are not able to offer a refund.",
    "The dog chased the ball across the yard.",
    "Hey, just checking if you saw my last message about the budget.",
    "The government announced new rules for electric bikes.",
    "Our customers love the new design of the website.",
    "The volunteers cleaned up the beach on Sunday morning.",
    "It is absolutely essential that everyone arrives on time for the training.",
)

ERROR_SENTENCES = (
    "Their going to the store tomorow to by some groceries.",
    "Me and him goes to the gym every mornings.",
    "The informations you sent was very usefull.",
    "She don't like when people is late.",
    "I have went to London three times last year.",
    "Its a beautifull day and the sun shine bright.",
    "Each of the students have their own laptop.",
    "We was planning to visit you but the car breaked down.",
    "Between you and I, the project is running late.",
    "He runned faster then anyone else in the race.",
    "There is less people here than I expected.",
    "I could of finished the work if I had more time.",
    "The datas show a clear increase in sales.",
    "She has a lot of experiences in marketing and she know many peoples.",
    "Who's book is this on the table?",
    "Everybody were excited about the trip to the mountains.",
)

REWRITE_TEMPLATES = (
    "Rewrite this sentence to sound more formal: {s}",
    "Make this sentence more concise: {s}",
    "Paraphrase this sentence: {s}",
    "Rewrite this sentence so a child could understand it: {s}",
    "Make this sentence sound friendlier: {s}",
    "Rewrite the following sentence in the passive voice: {s}",
    "Turn this sentence into a question: {s}",
    "Rewrite this sentence in a more confident tone: {s}",
    "Give me three different ways to say this: {s}",
)

TRANSLATE_SENTENCES = (
    "Where is the nearest train station?", "I would like to book a table for two people.",
    "Thank you very much for your help.", "How much does this cost?", "The weather is beautiful today.",
    "Could you please speak more slowly?", "I have lost my keys.", "What time does the museum open?",
    "My name is Anna and I work as a nurse.", "I am allergic to peanuts.", "We are going to the beach this weekend.",
    "Happy birthday! I hope you have a wonderful day.", "Can I pay by credit card?", "The meeting starts at ten o'clock.",
    "I don't understand. Can you repeat that?", "Where can I buy a ticket for the bus?", "The library is closed on Sundays.",
    "I have been learning this language for two years.", "Please call me when you arrive at the hotel.",
    "Is there a pharmacy near here?", "This soup is delicious.", "I'm sorry I'm late.",
    "Do you know a good place to eat nearby?", "My flight has been delayed by three hours.",
    "We need to leave early tomorrow morning.", "The children are playing in the garden.",
    "I would like a cup of coffee with milk, please.", "Turn left at the second traffic light.",
)

LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Japanese", "Swedish", "Polish", "Turkish")

FOREIGN_SENTENCES = (
    ("French", "Je voudrais réserver une chambre pour deux nuits."),
    ("French", "Il fait très froid ce matin."),
    ("French", "Pouvez-vous m'aider, s'il vous plaît ?"),
    ("Spanish", "¿Dónde está la estación de tren?"),
    ("Spanish", "Mañana vamos a visitar a mis abuelos."),
    ("Spanish", "No tengo tiempo para cocinar esta noche."),
    ("German", "Ich habe meinen Schlüssel verloren."),
    ("German", "Wie spät ist es?"),
    ("German", "Das Wetter ist heute sehr schön."),
    ("Italian", "Vorrei un caffè, per favore."),
    ("Italian", "Dov'è il bagno?"),
    ("Portuguese", "Eu gosto muito de ler livros."),
    ("Dutch", "Ik woon al vijf jaar in Amsterdam."),
)

POEM_TOPICS = (
    "the ocean at night", "autumn leaves", "a cup of morning coffee", "a city in the rain", "friendship",
    "the first snow of winter", "an old lighthouse", "a cat sleeping in the sun", "the Moon", "a long train journey",
    "growing older", "a summer thunderstorm", "a garden in spring", "the sound of a piano", "a forgotten library",
    "a mountain sunrise", "homesickness", "a busy kitchen", "the stars over the desert", "a child's first steps",
    "a quiet Sunday morning", "the last day of school", "a river flowing to the sea", "a snowy forest", "hope",
)

LIMERICK_SUBJECTS = (
    "a cat who loves lasagna", "a forgetful wizard", "a programmer who never sleeps", "a very tall giraffe",
    "a chef who burns everything", "a dog who thinks he is a cat", "a penguin on vacation", "a robot learning to dance",
    "a teacher who lost her glasses", "a goat who eats homework",
)

STORY_CHARACTERS = (
    "a retired astronaut", "a shy librarian", "a young baker", "a lonely robot", "a lighthouse keeper",
    "a talking fox", "a nervous student", "an old fisherman", "a time traveler", "a street musician",
    "a detective", "a girl who can speak to birds", "a grandfather", "a lost dragon", "a new teacher",
)

STORY_SITUATIONS = (
    "finds a mysterious map", "wakes up with no memory", "has to save the village from a flood",
    "receives a letter from the future", "gets stuck in an elevator with a stranger", "discovers a hidden door in the basement",
    "wins a trip to the Moon", "must solve a puzzle before sunset", "befriends an unusual neighbor",
    "opens a shop that sells forgotten dreams", "loses something important on a train", "has one day to learn to dance",
)

STORY_OPENINGS = (
    "The door was open when I got home.", "Nobody in town had ever seen snow before that morning.",
    "The last message on the phone was only three words long.", "It was the quietest birthday party in history.",
    "The robot had one rule, and it had just broken it.", "Every clock in the house stopped at exactly midnight.",
    "She found the letter inside a library book.", "The rain had not stopped for forty days.",
)

EMAIL_RECIPIENTS = ("my manager", "a client", "my landlord", "a professor", "my neighbor", "a colleague", "the hiring manager", "a customer")

EMAIL_PURPOSES = (
    "asking for a day off next Friday", "apologizing for missing a deadline", "asking for an extension on a project",
    "requesting a meeting to discuss next steps", "following up on an unanswered question", "declining an invitation politely",
    "reporting a problem with the heating", "thanking them for their support", "introducing myself",
    "asking for feedback on my work", "explaining a delay in delivery", "confirming the details of our appointment",
)

PRODUCTS = (
    "a reusable water bottle", "noise-cancelling headphones", "a handmade leather wallet", "an ergonomic office chair",
    "a smart thermostat", "organic green tea", "a waterproof hiking jacket", "a children's picture book about space",
    "a cast-iron frying pan", "a solar-powered phone charger", "a yoga mat", "a mechanical keyboard",
)

TOAST_OCCASIONS = (
    "my sister's wedding", "my parents' fortieth anniversary", "a friend's retirement party", "a colleague's farewell",
    "a New Year's Eve dinner", "my best friend's birthday", "the opening of a new office", "a graduation party",
)

ANNOUNCEMENTS = (
    "the launch of a new coffee blend", "a free workshop on photography", "our store's summer sale", "the release of a new app feature",
    "a charity run next month", "the opening of a new library branch", "a podcast episode with a famous chef", "a job opening on our team",
)

SPEECH_OCCASIONS = (
    "the first day of school", "a team kickoff meeting", "a charity gala", "a graduation ceremony",
    "an award acceptance", "a community clean-up day", "the end of a successful project", "a sports team's final game of the season",
)

DIALOGUE_PAIRS = (
    ("a customer", "a shop assistant"), ("a cat", "a dog"), ("a student", "a teacher"), ("two astronauts", "mission control"),
    ("a tourist", "a local"), ("a doctor", "a patient"), ("Shakespeare", "a modern teenager"), ("a robot", "a child"),
)

DIALOGUE_TOPICS = ("the weather", "a lost umbrella", "the meaning of friendship", "what to eat for dinner", "a broken phone", "a trip to the zoo")

SLOGAN_TARGETS = (
    "a recycling campaign", "a local bakery", "a bike-sharing program", "a blood donation drive", "a cybersecurity awareness week",
    "an eco-friendly cleaning product", "a children's reading program", "a new fitness app", "a farmers' market", "a dental clinic",
)

THANK_NOTES = (
    ("my neighbor", "watering my plants while I was away"), ("a teacher", "helping me prepare for my exams"),
    ("my team", "working extra hours on the launch"), ("a friend", "the birthday gift"),
    ("my mentor", "all the advice over the past year"), ("the nurses", "taking care of my father"),
    ("a host family", "welcoming me into their home"), ("a coworker", "covering my shift"),
)

CREATIVE_TEMPLATES = (
    T("Write a short poem about {topic}.", topic=POEM_TOPICS),
    T("Write a haiku about {topic}.", topic=POEM_TOPICS),
    T("Write a four-line rhyming poem about {topic}.", topic=POEM_TOPICS),
    T("Write a free verse poem about {topic}.", topic=POEM_TOPICS),
    T("Write a limerick about {subject}.", subject=LIMERICK_SUBJECTS),
    T("Write a short story about {character} who {situation}.", character=STORY_CHARACTERS, situation=STORY_SITUATIONS),
    T("Write a 100-word story that begins with the sentence: \"{opening}\"", opening=STORY_OPENINGS),
    T("Write a story for children about {character} who {situation}. Keep it under 200 words.",
      character=STORY_CHARACTERS, situation=STORY_SITUATIONS),
    T("Write an email to {recipient} {purpose}.", recipient=EMAIL_RECIPIENTS, purpose=EMAIL_PURPOSES),
    T("Draft a polite message to {recipient} {purpose}.", recipient=EMAIL_RECIPIENTS, purpose=EMAIL_PURPOSES),
    T("Write a product description for {product}.", product=PRODUCTS),
    T("Write a short advertisement for {product} aimed at students.", product=PRODUCTS),
    T("Write a toast for {occasion}.", occasion=TOAST_OCCASIONS),
    T("Write a tweet announcing {news}.", news=ANNOUNCEMENTS),
    T("Write a short speech for {occasion}.", occasion=SPEECH_OCCASIONS),
    T("Write a dialogue between {pair[0]} and {pair[1]} about {topic}.", pair=DIALOGUE_PAIRS, topic=DIALOGUE_TOPICS),
    T("Come up with a slogan for {target}.", target=SLOGAN_TARGETS),
    T("Write a thank-you note to {note[0]} for {note[1]}.", note=THANK_NOTES),
)

# Math word problems: every number list is small so that the problems stay natural.
MATH_TEMPLATES = (
    T("A train travels {d} kilometers in {t} hours. What is its average speed?", d=(120, 180, 250, 320, 450), t=(2, 3, 4, 5)),
    T("If a jacket costs ${p} and is on sale for {pct}% off, what is the sale price?", p=(40, 60, 85, 120, 250), pct=(10, 15, 20, 25, 30, 40)),
    T("Maria has {a} apples. She gives {b} to her friend and then buys {c} more. How many apples does she have now?",
      a=(12, 15, 20, 24), b=(3, 5, 7), c=(4, 6, 10)),
    T("A rectangle has a length of {l} cm and a width of {w} cm. What are its area and perimeter?", l=(8, 12, 15, 20, 25), w=(3, 4, 6, 9)),
    T("What is {pct}% of {x}?", pct=(5, 12, 15, 35, 60, 75), x=(80, 240, 360, 1250)),
    T("A recipe uses {cups} cups of flour to make {n} cookies. How much flour do I need for {m} cookies?",
      cups=(2, 3), n=(24, 30, 36), m=(60, 72, 90)),
    T("If I invest ${p} at {r}% annual interest compounded yearly, how much will I have after {y} years?",
      p=(1000, 2500, 5000, 10000), r=(3, 4, 5, 7), y=(5, 10, 20)),
    T("Solve for x: {a}x + {b} = {c}.", a=(2, 3, 5, 7), b=(4, 9, 11), c=(25, 40, 53)),
    T("A car uses {l} liters of fuel per 100 kilometers. How much fuel does it need for a {d} km trip?",
      l=(5, 6.5, 8), d=(240, 380, 620, 900)),
    T("{n} friends split a restaurant bill of ${bill} and add a tip of {tip}%. How much does each person pay?",
      n=("Three", "Four", "Five"), bill=(84, 126, 210), tip=(15, 18, 20)),
    T("What is the average of {nums}?", nums=("12, 18, 25 and 31", "4, 8, 15, 16, 23 and 42", "70, 85 and 91", "3.5, 4.2 and 6.1", "100, 250, 175 and 90")),
    T("A worker earns ${wage} per hour and works {h} hours a week. How much does she earn in {w} weeks?",
      wage=(14, 18.5, 22, 35), h=(20, 32, 40), w=(4, 6, 52)),
    T("A circle has a radius of {r} meters. What is its area and circumference?", r=(2, 3.5, 7, 10, 12)),
    T("A tank holds {v} liters of water and fills at {rate} liters per minute. How long does it take to fill it?",
      v=(300, 500, 1200), rate=(8, 12, 25)),
    T("Two trains leave stations {d} km apart and travel toward each other at {s1} km/h and {s2} km/h. When do they meet?",
      d=(300, 420, 560), s1=(60, 80), s2=(70, 90, 100)),
    T("What is the probability of rolling a sum of {s} with two six-sided dice?", s=(2, 5, 7, 9, 11, 12)),
    T("Is {n} a prime number? Explain how you know.", n=(51, 61, 87, 91, 97, 119, 127, 221)),
    T("What is the least common multiple of {a} and {b}?", a=(4, 6, 9, 12), b=(10, 15, 14, 21)),
    T("Convert {f} degrees Fahrenheit to Celsius.", f=(32, 50, 68, 77, 98.6, 212)),
    T("Simplify the fraction {num}/{den}.", num=(12, 18, 45, 64), den=(36, 48, 60, 96)),
    T("A store sells pencils in packs of {k}. How many packs do I need to buy to get at least {n} pencils?",
      k=(6, 8, 12), n=(50, 75, 100)),
    T("A bike costs ${price}. If I save ${save} a week, how many weeks will it take me to afford it?",
      price=(240, 360, 450), save=(15, 20, 25, 40)),
    T("The population of a town grows by {pct}% each year. If it has {p} people now, how many will it have in {y} years?",
      pct=(2, 3, 5), p=("12,000", "45,000"), y=(2, 3, 10)),
    T("A class has {g} girls and {b} boys. What fraction of the class are girls?", g=(12, 14, 15), b=(10, 13, 18)),
    T("If {k} workers can build a wall in {d} days, how long would it take {m} workers working at the same rate?",
      k=(4, 6), d=(10, 12, 15), m=(3, 5, 8)),
)

PY_TASKS = (
    "checks whether a string is a palindrome", "returns the n-th Fibonacci number", "removes duplicates from a list while keeping the order",
    "counts the words in a text file", "merges two sorted lists into one sorted list", "finds the largest number in a list without using max()",
    "converts a Roman numeral to an integer", "checks whether two strings are anagrams", "flattens a nested list",
    "returns the most common element in a list", "validates an email address", "computes the factorial of a number recursively",
    "reverses the words in a sentence", "splits a list into chunks of a given size", "calculates the greatest common divisor of two numbers",
    "reads a CSV file and returns the average of one column", "generates a random password of a given length",
    "returns all prime numbers below a given limit", "converts a temperature from Celsius to Fahrenheit", "groups a list of words by their first letter",
    "checks if a year is a leap year", "counts the vowels in a string", "finds the second largest number in a list",
    "rotates a list by k positions", "turns a dictionary's keys into values and values into keys", "implements binary search",
)

CODE_TASKS = (
    "read a CSV file", "reverse a string", "sort a list of objects by one field", "make an HTTP GET request",
    "handle exceptions", "format a date as YYYY-MM-DD", "read a file line by line", "remove whitespace from the ends of a string",
    "check if a key exists in a map or dictionary", "convert a string to an integer", "run code in parallel", "write unit tests",
    "parse JSON", "get the current time", "generate a random number", "concatenate strings efficiently",
)

CODE_LANGUAGES = ("Python", "JavaScript", "Java", "C#", "Go", "Rust", "Ruby", "TypeScript")

CODE_DIFFS = (
    ("a list", "a tuple", "Python"), ("let", "const", "JavaScript"), ("an interface", "an abstract class", "Java"),
    ("a struct", "a class", "C#"), ("==", "===", "JavaScript"), ("a process", "a thread", "operating systems"),
    ("git merge", "git rebase", "Git"), ("a pointer", "a reference", "C++"), ("an array", "a slice", "Go"),
    ("INNER JOIN", "LEFT JOIN", "SQL"), ("a shallow copy", "a deep copy", "Python"), ("async functions", "threads", "Python"),
    ("String", "&str", "Rust"), ("null", "undefined", "JavaScript"), ("a stack", "a queue", "data structures"),
)

CODE_SNIPPETS = (
    "print([x * x for x in range(10) if x % 2 == 0])",
    "const total = items.reduce((sum, item) => sum + item.price, 0);",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 5;",
    "for i, word in enumerate(sorted(set(words))): print(i, word)",
    "grep -rn \"TODO\" src/ | wc -l",
    "result = {k: v for k, v in data.items() if v is not None}",
    "git log --oneline --since=\"2 weeks ago\"",
    "document.querySelectorAll('button').forEach(b => b.disabled = true);",
    "with open('log.txt') as f: errors = [line for line in f if 'ERROR' in line]",
    "x = a if a > b else b",
    "find . -name '*.tmp' -mtime +7 -delete",
    "squares = list(map(lambda n: n ** 2, numbers))",
)

PY_ERRORS = (
    "a KeyError", "an IndexError saying the list index is out of range", "a TypeError saying 'NoneType' object is not subscriptable",
    "a RecursionError", "a ModuleNotFoundError", "an UnboundLocalError", "a ZeroDivisionError", "an IndentationError",
    "a ValueError when I convert a string to an int", "an AttributeError saying 'str' object has no attribute 'append'",
)

SQL_TASKS = (
    "finds the ten customers who spent the most money", "counts the orders placed in each month of 2023",
    "lists employees who earn more than their manager", "finds duplicate email addresses in a users table",
    "returns the average salary per department", "deletes rows older than one year from a logs table",
    "finds products that have never been ordered", "shows the second highest salary in the employees table",
)

CS_CONCEPTS = (
    "recursion", "a closure", "dependency injection", "a race condition", "memoization", "Big O notation", "a hash table",
    "garbage collection", "polymorphism", "an API", "a deadlock", "a linked list", "lazy evaluation", "a REST API",
    "a binary tree", "encapsulation", "a unit test", "technical debt", "a callback function", "a mutex",
    "immutability", "an ORM", "a microservice", "continuous integration", "a regular expression", "type inference",
)

REGEX_TARGETS = (
    "a valid US ZIP code", "dates in the format DD/MM/YYYY", "an email address", "a hexadecimal color code like #1a2b3c",
    "a phone number like 555-123-4567", "words that start with a capital letter", "an IPv4 address", "a time like 14:35",
)

BUGGY_SNIPPETS = (
    "def average(nums): return sum(nums) / len(nums) + 1",
    "def is_even(n): return n % 2 == 1",
    "def last_item(items): return items[len(items)]",
    "def add_item(item, items=[]): items.append(item); return items",
    "for i in range(1, len(names)): print(names[i])",
    "def count_down(n): while n > 0: print(n)",
)

BASH_TASKS = (
    "find all files larger than 100 MB", "count the lines in every Python file in a folder", "rename all .jpeg files to .jpg",
    "show which process is using port 8080", "compress a folder into a tar.gz archive", "delete empty directories",
    "show the ten largest files in my home directory", "replace a word in every text file in a folder",
)

ALGORITHMS = ("binary search", "merge sort", "quicksort in the worst case", "inserting into a hash table", "breadth-first search", "bubble sort", "looking up an item in a Python list", "Dijkstra's algorithm")

CODING_TEMPLATES = (
    T("Write a Python function that {task}.", task=PY_TASKS),
    T("How do I {task} in {lang}?", task=CODE_TASKS, lang=CODE_LANGUAGES),
    T("What is the difference between {d[0]} and {d[1]} in {d[2]}?", d=CODE_DIFFS),
    T("Explain what this code does: {snippet}", snippet=CODE_SNIPPETS),
    T("Why does my Python code raise {error}, and how do I fix it?", error=PY_ERRORS),
    T("Write a SQL query that {task}.", task=SQL_TASKS),
    T("What is {concept} in programming?", concept=CS_CONCEPTS),
    T("Explain {concept} with a simple code example.", concept=CS_CONCEPTS),
    T("Write a regular expression that matches {target}.", target=REGEX_TARGETS),
    T("Find the bug in this Python code: {snippet}", snippet=BUGGY_SNIPPETS),
    T("Write a bash command to {task}.", task=BASH_TASKS),
    T("What is the time complexity of {algorithm}?", algorithm=ALGORITHMS),
    T("Write a unit test for a function that {task}.", task=PY_TASKS),
)

GOALS = (
    "sleep better", "stop procrastinating", "save money on groceries", "become a better public speaker", "read more books",
    "make new friends as an adult", "get better at chess", "improve my handwriting", "stay motivated when working from home",
    "drink more water during the day", "reduce my screen time", "remember people's names", "build a habit of exercising",
    "become more patient", "learn to cook", "improve my credit score", "write faster", "be more productive in the morning",
    "deal with criticism at work", "get better at math", "keep my apartment tidy", "prepare for a job interview",
    "stop biting my nails", "learn to swim as an adult", "manage my time better", "feel less anxious before exams",
    "grow my small business", "improve my posture", "eat less sugar", "become a morning person",
)

TIP_ACTIVITIES = (
    "a first job interview", "running a first marathon", "learning a new language as an adult", "traveling alone",
    "studying for a math exam", "taking care of a newborn", "working from home", "moving to a new city",
    "hosting a dinner party", "taking better photos", "managing a small team", "writing a college essay",
    "growing tomatoes", "saving for a house", "negotiating rent", "starting a podcast",
)

SITUATIONS = (
    "feeling overwhelmed at work", "nervous about moving to a new city", "struggling to make friends at college",
    "trying to decide between two job offers", "falling behind in my classes", "having trouble sleeping before big meetings",
    "arguing with my roommate about chores", "bored with my job", "worried about my elderly parents living alone",
    "about to give my first presentation", "getting too many notifications on my phone", "trying to pay off credit card debt",
    "starting a new job next week", "feeling lonely after a breakup",
)

ADVICE_TOPICS = (
    "choosing a college major", "buying my first car", "asking for a raise", "planning a budget", "dealing with a difficult coworker",
    "raising a teenager", "starting to invest", "choosing a laptop", "writing a wedding speech", "keeping a long-distance friendship",
)

DECISIONS = (
    "adopting a dog", "buying a used car", "quitting my job to start a business", "going back to school", "moving abroad",
    "buying a house", "getting a credit card", "signing a gym membership", "switching careers", "taking out a student loan",
)

HARD_NEWS = (
    ("my boss", "I made a mistake in the report"), ("my friend", "I can't come to her wedding"),
    ("my roommate", "I'm moving out"), ("my parents", "I'm changing my major"),
    ("a client", "the project will be late"), ("my neighbor", "his music is too loud"),
    ("my team", "the project was cancelled"), ("my landlord", "I need to break the lease"),
)

ADVICE_TEMPLATES = (
    T("How can I {goal}?", goal=GOALS),
    T("What are some tips for {activity}?", activity=TIP_ACTIVITIES),
    T("I'm {situation}. What should I do?", situation=SITUATIONS),
    T("Give me advice on {topic}.", topic=ADVICE_TOPICS),
    T("What should I consider before {decision}?", decision=DECISIONS),
    T("How do I tell {news[0]} that {news[1]}?", news=HARD_NEWS),
    T("What is the best way to {goal}?", goal=GOALS),
    T("Give me three practical tips to {goal}.", goal=GOALS),
)

WORDS = (
    "serendipity", "ephemeral", "ubiquitous", "pragmatic", "meticulous", "resilience", "ambiguous", "paradox",
    "nostalgia", "empathy", "hypothesis", "metaphor", "catalyst", "benevolent", "candid", "diligent",
    "eloquent", "frugal", "gregarious", "hubris", "inertia", "juxtaposition", "lethargic", "mundane",
    "nuance", "obsolete", "quintessential", "redundant", "skeptical", "tenacious", "verbose", "whimsical",
    "zealous", "altruism", "cacophony", "dichotomy", "epiphany", "facetious", "gullible", "idiosyncrasy",
)

TERMS = (
    "opportunity cost", "due diligence", "carbon footprint", "net neutrality", "bear market", "gig economy",
    "fiscal year", "firewall", "placebo", "peer review", "booster shot", "algorithm", "mutual fund", "white paper",
    "deductible", "black swan event", "filibuster", "quorum", "greenwashing", "cognitive load", "bandwidth", "inflation rate",
)

IDIOMS = (
    "break the ice", "bite the bullet", "the ball is in your court", "once in a blue moon", "spill the beans",
    "hit the nail on the head", "under the weather", "let the cat out of the bag", "cost an arm and a leg",
    "a blessing in disguise", "burn the midnight oil", "cut corners", "beat around the bush", "the elephant in the room",
    "jump on the bandwagon", "bark up the wrong tree", "a piece of cake", "kill two birds with one stone",
    "the last straw", "cry over spilled milk",
)

SIMPLE_WORDS = ("happy", "big", "fast", "important", "difficult", "beautiful", "smart", "tired", "angry", "interesting", "good", "small")

ACRONYMS = ("NASA", "HTML", "GDP", "DNA", "UNESCO", "laser", "scuba", "PDF", "CPU", "NATO", "ASAP", "USB", "GPS", "radar", "FAQ", "ISBN")

DEFINITION_TEMPLATES = (
    T("Define {word}.", word=WORDS),
    T("What does the word \"{word}\" mean?", word=WORDS),
    T("Give me a definition of \"{word}\" and use it in a sentence.", word=WORDS),
    T("What does the term \"{term}\" mean?", term=TERMS),
    T("Explain the term \"{term}\" in one or two sentences.", term=TERMS),
    T("What is the meaning of the idiom \"{idiom}\"?", idiom=IDIOMS),
    T("Where does the phrase \"{idiom}\" come from?", idiom=IDIOMS),
    T("Use the idiom \"{idiom}\" in an example sentence.", idiom=IDIOMS),
    T("What are some synonyms for \"{word}\"?", word=SIMPLE_WORDS),
    T("What is the opposite of \"{word}\"?", word=SIMPLE_WORDS + WORDS[:12]),
    T("What does {acronym} stand for?", acronym=ACRONYMS),
)

HOWTOS = (
    "change a flat tire", "make a good cup of pour-over coffee", "write a cover letter", "remove a red wine stain from a carpet",
    "start a vegetable garden", "tie a tie", "set up a budget spreadsheet", "back up my phone", "boil an egg perfectly",
    "clean a cast-iron pan", "unclog a kitchen sink", "make sourdough starter", "create a strong password",
    "train a puppy to sit", "paint a wall without streaks", "cite a website in APA style", "start meditating",
    "fold a fitted sheet", "jump-start a car", "repot a houseplant", "make a paper airplane that flies far",
    "set up a home Wi-Fi network", "write a haiku", "sharpen a kitchen knife", "prepare for a marathon",
    "make homemade pasta", "reset a forgotten router password", "plan a road trip", "learn to touch type",
    "read a nutrition label", "bake chocolate chip cookies", "make a simple website", "wash a wool sweater",
    "get rid of fruit flies", "start journaling", "build a campfire safely", "make a smoothie", "hang a picture straight",
    "install Python on Windows", "create a pivot table in Excel", "negotiate a lower price on a car", "write a thesis statement",
)

HOWTO_TEMPLATES = (
    T("How do I {task}?", task=HOWTOS),
    T("What are the steps to {task}?", task=HOWTOS),
    T("Give me step-by-step instructions to {task}.", task=HOWTOS),
    T("What is the easiest way to {task}?", task=HOWTOS),
    T("Explain how to {task} to a complete beginner.", task=HOWTOS),
    T("What do I need to {task}?", task=HOWTOS),
)

CAPITALS = (
    "France", "Japan", "Australia", "Canada", "Brazil", "Kenya", "Egypt", "Norway", "Argentina", "Peru",
    "Vietnam", "Turkey", "New Zealand", "South Korea", "Morocco", "Switzerland", "Portugal", "Chile", "Thailand", "Ghana",
    "Iceland", "Mexico", "Poland", "India", "Nigeria", "Indonesia", "Hungary", "Colombia", "Finland", "Ireland",
)

BOOKS = (
    "Pride and Prejudice", "1984", "Don Quixote", "The Great Gatsby", "War and Peace", "One Hundred Years of Solitude",
    "To Kill a Mockingbird", "Moby-Dick", "Frankenstein", "The Odyssey", "Crime and Punishment", "Jane Eyre",
    "The Hobbit", "Things Fall Apart", "Brave New World", "The Catcher in the Rye", "Wuthering Heights",
    "The Little Prince", "Dracula", "Les Misérables", "Anna Karenina", "The Divine Comedy", "Hamlet", "Beloved",
)

PAINTINGS = (
    "the Mona Lisa", "The Starry Night", "The Last Supper", "Guernica", "The Persistence of Memory", "The Scream",
    "Girl with a Pearl Earring", "The Birth of Venus", "American Gothic", "The Night Watch", "Water Lilies", "The Kiss",
)

INVENTIONS = (
    "the telephone", "the light bulb", "the printing press", "the World Wide Web", "the steam engine", "penicillin",
    "the airplane", "the radio", "the telescope", "dynamite", "the periodic table", "the polio vaccine", "the sewing machine",
)

YEAR_EVENTS = (
    "the Berlin Wall fall", "humans first land on the Moon", "World War II end", "the Titanic sink", "the French Revolution begin",
    "the first iPhone come out", "the United Nations form", "Columbus first reach the Americas", "India gain independence",
    "the Wright brothers make their first flight", "the Chernobyl disaster happen", "the euro become a currency",
    "women get the right to vote in the United Kingdom", "the first modern Olympic Games take place", "the Magna Carta get signed",
)

SUPERLATIVES = (
    "ocean on Earth", "planet in the solar system", "desert in the world", "organ in the human body", "country in Africa by area",
    "animal that has ever lived", "lake in North America", "moon of Saturn", "bone in the human body", "island in the world",
)

COUNT_QUESTIONS = (
    "bones are in the adult human body", "players are on a soccer team", "moons does Mars have", "keys are on a standard piano",
    "sides does a hexagon have", "hearts does an octopus have", "time zones does Russia have", "strings does a violin have",
    "chambers does the human heart have", "elements are in the periodic table", "teeth does an adult human have",
    "countries are in the European Union", "legs does a spider have", "minutes are in a day",
)

ELEMENTS = ("gold", "iron", "sodium", "potassium", "silver", "lead", "tin", "mercury", "helium", "copper", "tungsten", "calcium")

LANDMARKS = (
    "Machu Picchu", "the Taj Mahal", "Angkor Wat", "the Colosseum", "Petra", "the Great Barrier Reef", "Mount Kilimanjaro",
    "Stonehenge", "the Alhambra", "Chichen Itza", "the Sagrada Família", "Victoria Falls", "the Acropolis", "Uluru",
)

PEOPLE = (
    "Ada Lovelace", "Nelson Mandela", "Leonardo da Vinci", "Cleopatra", "Nikola Tesla", "Frida Kahlo", "Genghis Khan",
    "Rosalind Franklin", "Mahatma Gandhi", "Galileo Galilei", "Joan of Arc", "Alan Turing", "Harriet Tubman",
    "Confucius", "Simón Bolívar", "Florence Nightingale", "Charles Darwin", "Queen Victoria", "Ibn Battuta", "Marie Curie",
    "Wolfgang Amadeus Mozart", "Martin Luther King Jr.", "Hypatia", "Isaac Newton",
)

FACT_TOPICS = (
    "octopuses", "the Moon", "honey", "the human brain", "ancient Rome", "volcanoes", "the Sahara desert", "penguins",
    "Antarctica", "the Eiffel Tower", "sharks", "chocolate", "the Amazon River", "bamboo", "Jupiter", "the Vikings",
)

FIXED_TRIVIA = (
    "What is the boiling point of water at sea level in Fahrenheit?", "Which planet is known as the Red Planet?",
    "What is the hardest natural substance?", "What gas do plants absorb from the air?", "What is the smallest prime number?",
    "Which ocean is the Bermuda Triangle in?", "What is the speed of sound in air?", "How long does light from the Sun take to reach Earth?",
    "What is the tallest mountain in the world?", "Which country has the most people?", "What is the longest river in Europe?",
    "What currency is used in Japan?", "What is the freezing point of water in Kelvin?", "How many continents are there?",
    "Which blood type is known as the universal donor?", "What does a barometer measure?", "What is the main ingredient in guacamole?",
    "Who was the first person to reach the South Pole?", "What is the most spoken language in the world?",
    "Which planet has the most moons?", "What is the chemical formula for table salt?", "Which animal is the fastest on land?",
    "What is the largest country in South America?", "In which country did the Olympic Games originate?",
    "What is the name of the galaxy we live in?", "What is the square root of 144?", "Which vitamin do we get from sunlight?",
    "Who composed the Four Seasons?", "What is the capital of the state of California?", "How many hours are in a week?",
)

TRIVIA_TEMPLATES = (
    T("What is the capital of {country}?", country=CAPITALS),
    T("Who wrote {book}?", book=BOOKS),
    T("Who painted {painting}?", painting=PAINTINGS),
    T("Who invented {invention}?", invention=INVENTIONS),
    T("In what year did {event}?", event=YEAR_EVENTS),
    T("What is the largest {thing}?", thing=SUPERLATIVES),
    T("How many {q}?", q=COUNT_QUESTIONS),
    T("What is the chemical symbol for {element}?", element=ELEMENTS),
    T("Where is {landmark} located?", landmark=LANDMARKS),
    T("Who was {person}?", person=PEOPLE),
    T("What is {person} best known for?", person=PEOPLE),
    T("Tell me an interesting fact about {topic}.", topic=FACT_TOPICS),
    T("{question}", question=FIXED_TRIVIA),
    T("What is the official language of {country}?", country=CAPITALS),
    T("Give me a short summary of the plot of {book}.", book=BOOKS),
)

OPINION_TOPICS = (
    "remote work", "four-day work weeks", "electric cars", "homeschooling", "social media for teenagers", "space tourism",
    "standardized testing", "self-driving cars", "open-plan offices", "online dating", "school uniforms", "minimalism",
    "nuclear energy", "tipping culture", "video games as art", "cryptocurrency", "zoos", "fast fashion",
)

CHOICES = (
    ("rent", "buy a home"), ("study in the morning", "study at night"), ("work for a startup", "work for a large company"),
    ("pay off debt", "save money first"), ("learn one language deeply", "learn several languages a little"),
    ("read physical books", "read e-books"), ("travel alone", "travel with friends"), ("specialize", "be a generalist"),
    ("exercise in the morning", "exercise in the evening"), ("live in the city", "live in the countryside"),
    ("lease a car", "buy one"), ("take notes by hand", "type them"),
)

CLAIMS = (
    "cities should ban cars from their centers", "everyone should learn to code", "homework should be banned in primary school",
    "artificial intelligence will create more jobs than it destroys", "voting should be mandatory", "college should be free",
    "people will live on Mars within fifty years", "handwriting should still be taught in schools", "social media does more harm than good",
    "printed newspapers will disappear", "museums should be free to enter", "a universal basic income is a good idea",
)

POSITIONS = (
    "a shorter school day", "banning single-use plastics", "later school start times", "raising the minimum wage",
    "investing in public transport", "daylight saving time", "working from home", "learning Latin in school",
)

SHOULD_QUESTIONS = (
    "learn Python or JavaScript first", "get a master's degree", "buy an electric bike for commuting", "switch to a standing desk",
    "keep a paper planner", "start running or start swimming", "read the book before watching the movie", "learn to play the piano at 40",
)

OPINION_TEMPLATES = (
    T("What do you think about {topic}?", topic=OPINION_TOPICS),
    T("What are the pros and cons of {topic}?", topic=OPINION_TOPICS),
    T("Is it better to {c[0]} or {c[1]}?", c=CHOICES),
    T("Do you think {claim}? Why or why not?", claim=CLAIMS),
    T("Make the case for {position}.", position=POSITIONS),
    T("What is the strongest argument against {position}?", position=POSITIONS),
    T("Should I {q}?", q=SHOULD_QUESTIONS),
    T("Give me a balanced view on whether {claim}.", claim=CLAIMS),
)

GENRES = ("science fiction", "mystery", "historical fiction", "fantasy", "non-fiction", "poetry", "self-help", "classic")
READERS = ("a teenager", "someone who rarely reads", "a long flight", "a book club", "a ten-year-old", "a history lover")
CITIES = (
    "Lisbon", "Kyoto", "Barcelona", "Prague", "Istanbul", "Mexico City", "Rome", "Vienna", "Seoul", "Cape Town",
    "Edinburgh", "Buenos Aires", "Copenhagen", "Hanoi", "Marrakesh", "New York", "Sydney", "Budapest", "Amsterdam", "Vancouver",
)
TRIP_LENGTHS = ("two-day", "three-day", "one-week", "weekend")
DISHES = (
    "vegetable curry", "banana bread", "tomato soup", "chicken stir-fry", "pancakes", "guacamole", "lentil soup", "mac and cheese",
    "a Greek salad", "fried rice", "hummus", "shakshuka", "apple crumble", "pesto pasta", "chili con carne", "French toast",
    "a vegan burger", "potato gratin", "miso soup", "lemon bars", "a tuna sandwich", "oatmeal cookies", "roasted vegetables",
)
INGREDIENT_SETS = (
    "eggs, spinach and cheese", "rice, beans and a can of tomatoes", "chicken, lemon and garlic", "potatoes, onions and bacon",
    "pasta, mushrooms and cream", "tofu, broccoli and soy sauce", "bananas, oats and peanut butter", "leftover bread and milk",
    "chickpeas, carrots and cumin", "zucchini, tomatoes and feta",
)
PLANS = (
    ("workout routine", "a beginner who has 30 minutes a day"), ("meal plan", "a vegetarian student on a budget"),
    ("study plan", "someone learning Spanish from scratch"), ("cleaning schedule", "a family of four"),
    ("reading plan", "someone who wants to read twenty books this year"), ("training plan", "a first 5K run"),
)
MEDIA = (
    ("podcasts", "someone learning about history"), ("documentaries", "a family movie night"), ("YouTube channels", "learning to draw"),
    ("board games", "two players"), ("apps", "learning to meditate"), ("websites", "practicing math"),
)
EXAMS = ("a biology final", "the driving theory test", "a statistics exam", "a job certification exam", "a history test")

RECOMMEND_TEMPLATES = (
    T("Recommend {n} {genre} books for {reader}.", n=("three", "five"), genre=GENRES, reader=READERS),
    T("Suggest a {length} itinerary for a trip to {city}.", length=TRIP_LENGTHS, city=CITIES),
    T("What are the must-see places in {city}?", city=CITIES),
    T("Give me a simple recipe for {dish}.", dish=DISHES),
    T("How do I make {dish} at home?", dish=DISHES),
    T("What can I cook with {ingredients}?", ingredients=INGREDIENT_SETS),
    T("Make a weekly {p[0]} for {p[1]}.", p=PLANS),
    T("What are some good {m[0]} for {m[1]}?", m=MEDIA),
    T("Create a study schedule for {exam} in {weeks} weeks.", exam=EXAMS, weeks=("two", "three", "six")),
    T("What should I pack for a {length} trip to {city}?", length=TRIP_LENGTHS, city=CITIES),
)

ANIMALS = (
    "a dolphin", "a penguin", "a bat", "a salamander", "a whale shark", "a platypus", "a sea turtle", "an ostrich", "a frog",
    "a seahorse", "a koala", "a crocodile", "an eel", "an axolotl", "a hedgehog", "a manatee",
)
REVIEWS = (
    "The delivery was fast and the product works exactly as described.", "I waited two hours and nobody answered my call.",
    "The hotel was fine. Nothing special, but clean.", "Absolutely loved this book, I couldn't put it down!",
    "The headphones broke after one week.", "The food was cold but the staff apologized and gave us dessert for free.",
    "It does the job. I probably wouldn't buy it again though.", "Best concert I've been to in years.",
    "The app keeps crashing every time I open the camera.", "Great value for the price, and the color is even nicer in person.",
    "The class was too fast for beginners.", "Customer service fixed my problem in five minutes. Impressive.",
)
DATE_SENTENCES = (
    "The contract starts on March 3, 2024 and ends on February 28, 2025, with a review on September 1.",
    "We met on 12 June, moved in together on 1 October and got married the following May.",
    "The store is closed from December 24 to January 2 and reopens on January 3 at 9 a.m.",
    "Invoices sent before April 15 must be paid by May 1; later invoices are due within thirty days.",
)
SORT_WORDS = (
    "banana, apple, cherry, date, grape", "zebra, lion, elephant, giraffe, antelope", "Mars, Earth, Venus, Jupiter, Mercury",
    "violin, drum, flute, piano, cello", "Tokyo, Berlin, Cairo, Lima, Oslo",
)
ODD_GROUPS = (
    "apple, banana, carrot, mango", "Mercury, Venus, Moon, Mars", "violin, guitar, trumpet, cello", "square, triangle, circle, cube",
    "Paris, London, Berlin, Sydney", "shark, dolphin, salmon, tuna", "oak, maple, rose, pine", "red, blue, green, happy",
)
SEQUENCES = ("2, 4, 8, 16", "1, 1, 2, 3, 5, 8", "3, 6, 11, 18, 27", "1, 4, 9, 16, 25", "A, C, E, G", "100, 50, 25", "2, 3, 5, 7, 11", "J, F, M, A, M")
EVENT_ORDERS = (
    "the invention of the telephone, the first Moon landing, the printing press, the fall of the Berlin Wall",
    "the French Revolution, the American Declaration of Independence, World War I, the Renaissance",
    "the first iPhone, the founding of Google, the World Wide Web, the first email",
)
JOKE_TOPICS = ("cats", "programmers", "the weather", "coffee", "math teachers", "penguins", "vegetables", "libraries", "astronauts", "dentists")
UNIT_CONVERSIONS = (
    "5 miles to kilometers", "3 cups to milliliters", "72 hours to days", "150 pounds to kilograms", "2.5 liters to gallons",
    "6 feet to centimeters", "1,000 seconds to minutes", "30 degrees Celsius to Fahrenheit", "500 grams to ounces", "10 acres to hectares",
)
LOGIC_PUZZLES = (
    "If all roses are flowers and some flowers fade quickly, can we conclude that some roses fade quickly?",
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much does the ball cost?",
    "If it takes five machines five minutes to make five widgets, how long would it take 100 machines to make 100 widgets?",
    "Tom is taller than Sara, and Sara is taller than Ben. Who is the shortest?",
    "I have two coins that add up to 30 cents, and one of them is not a nickel. What are the coins?",
    "A farmer has 17 sheep and all but 9 run away. How many are left?",
    "If you rearrange the letters of \"listen\", which common English word can you make?",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
)

MISC_TEMPLATES = (
    T("Is {animal} a mammal, a bird, a reptile, a fish or an amphibian?", animal=ANIMALS),
    T("Classify the sentiment of this review as positive, negative or neutral: \"{review}\"", review=REVIEWS),
    T("What is the sentiment of this customer comment? {review}", review=REVIEWS),
    T("Extract all the dates from this sentence: {s}", s=DATE_SENTENCES),
    T("Sort these words alphabetically: {words}", words=SORT_WORDS),
    T("Which word does not belong in this group, and why? {group}", group=ODD_GROUPS),
    T("What comes next in the sequence {seq}?", seq=SEQUENCES),
    T("Put these events in chronological order: {events}.", events=EVENT_ORDERS),
    T("Tell me a joke about {topic}.", topic=JOKE_TOPICS),
    T("Tell me a riddle about {topic}.", topic=JOKE_TOPICS),
    T("Convert {q}.", q=UNIT_CONVERSIONS),
    T("{puzzle}", puzzle=LOGIC_PUZZLES),
    T("Solve this puzzle and explain your reasoning: {puzzle}", puzzle=LOGIC_PUZZLES),
)

# Longer requests that carry their own context: a few details, then the task.
BUSINESSES = (
    "bakery", "bike repair shop", "second-hand bookshop", "yoga studio", "dog-walking service", "hair salon",
    "online store selling handmade jewelry", "family restaurant", "flower shop", "tutoring business",
)
PLACES = ("a small town", "a busy city center", "a university town", "a seaside village")
BUSINESS_GOALS = (
    "attract more customers", "get more online reviews", "keep my regular customers coming back",
    "sell more during the quiet winter months", "build a stronger presence on social media",
)
STUDY_CASES = (
    ("a chemistry exam", "the basics of atoms and bonds", "balancing equations"),
    ("a statistics exam", "how to compute means and medians", "hypothesis testing"),
    ("a Spanish oral exam", "a lot of vocabulary", "speaking quickly without freezing"),
    ("a job interview for a data analyst role", "SQL", "explaining my projects clearly"),
    ("a history exam on the twentieth century", "the main dates", "writing essays under time pressure"),
    ("the GRE", "most of the vocabulary", "geometry problems"),
    ("a piano recital", "the notes of my piece", "playing in front of people"),
)
PREP_TIMES = ("five days", "two weeks", "one month")
GIFT_PEOPLE = (
    ("father", "He", 60), ("father", "He", 50), ("mother", "She", 65), ("mother", "She", 45), ("grandmother", "She", 90),
    ("grandfather", "He", 80), ("brother", "He", 30), ("sister", "She", 18), ("best friend", "She", 30), ("best friend", "He", 40),
    ("uncle", "He", 70), ("aunt", "She", 55),
)
GIFT_HOBBIES = (
    "gardening and old movies", "cooking and travel", "hiking and photography", "jazz and crossword puzzles",
    "football and board games", "reading mystery novels and baking",
)
TALK_CASES = (
    ("a nurse", "how vaccines work", "a class of twelve-year-olds"), ("a software engineer", "what my job involves", "a group of high school students"),
    ("an accountant", "why budgeting matters", "first-year university students"), ("a biologist", "why bees are important", "a local gardening club"),
    ("a firefighter", "fire safety at home", "parents at a school meeting"), ("a pilot", "how planes fly", "a group of curious children"),
    ("a librarian", "how to spot fake news", "retirees at a community center"), ("a chef", "why food safety matters", "new kitchen staff"),
)
JOB_CASES = (
    ("junior web developer", "building websites"), ("marketing coordinator", "in social media marketing"),
    ("customer support specialist", "helping customers on the phone"), ("project manager", "managing construction projects"),
    ("primary school teacher", "teaching children aged six to ten"), ("data analyst", "working with spreadsheets and SQL"),
    ("graphic designer", "designing logos and brochures"), ("lab technician", "running chemistry experiments"),
)
COMPANY_KINDS = ("a small nonprofit", "a large bank", "a growing startup", "a local hospital")
YEARS = (2, 4, 7)
TRAVEL_GROUPS = (
    ("four", "friends in our twenties"), ("five", "family members including two kids"), ("two", "retired teachers"),
    ("three", "university students on a tight budget"),
)
SEASONS = ("spring", "summer", "autumn", "winter")
TRAVEL_LIKES = ("good food and museums", "hiking and nature", "history and old architecture", "markets and live music")
TEAM_PROBLEMS = (
    "missing deadlines because tasks are not clearly assigned", "having long meetings that end without decisions",
    "arguing about code style in every review", "forgetting to update the shared documentation",
    "getting interrupted by urgent requests from other departments", "working late before every release",
)
OPENINGS = (
    ("blog post", "new gardeners", "Gardening is a popular hobby that many people enjoy."),
    ("cover letter", "a hiring manager", "I am writing to apply for the position advertised on your website."),
    ("school newsletter", "parents", "This month there were many events at our school."),
    ("wedding speech", "the guests", "I have known the groom for a long time."),
    ("product page", "online shoppers", "This backpack is a backpack that you can use for many things."),
    ("grant proposal", "a science foundation", "Our project is about studying water quality."),
)

MYTHS = (
    "we only use ten percent of our brains", "cracking your knuckles causes arthritis", "lightning never strikes the same place twice",
    "bulls are angered by the color red", "sugar makes children hyperactive", "you lose most of your body heat through your head",
    "the Great Wall of China is visible from space with the naked eye", "bats are blind", "shaving makes hair grow back thicker",
    "you should wait an hour after eating before swimming", "different parts of the tongue taste different flavors",
)
COMPLAINTS = (
    ("a coffee machine", "with a cracked water tank"), ("a pair of running shoes", "in the wrong size"),
    ("a bookshelf", "with two pieces missing"), ("a winter coat", "in a different color than the one I ordered"),
    ("a set of plates", "with three of them broken"), ("a phone case", "two weeks after the promised date"),
)
KID_QUESTIONS = (
    "why the sky gets dark at night", "where rain comes from", "why we have to pay taxes", "how the internet works",
    "why some people are poor", "why we can't see air", "what happens to the food we eat", "why the Moon changes shape",
)
CHILDREN = (("5-year-old son", "he"), ("7-year-old daughter", "she"), ("9-year-old son", "he"), ("6-year-old daughter", "she"))
ROUTINE_CASES = (
    ("full-time in an office", "two small kids", "get fitter"), ("night shifts at a hospital", "a dog", "lose some weight"),
    ("from home", "no car", "build more strength"), ("two part-time jobs", "a long commute", "have more energy"),
)

CONTEXT_TEMPLATES = (
    T("I run a small {business} in {place}. I want to {goal} without spending much money. Can you suggest five practical ideas?",
      business=BUSINESSES, place=PLACES, goal=BUSINESS_GOALS),
    T("I have {time} to prepare for {c[0]}. I already know {c[1]}, but I struggle with {c[2]}. Make a study plan for me.",
      time=PREP_TIMES, c=STUDY_CASES),
    T("My {p[0]} is turning {p[2]} next month. {p[1]} loves {hobbies}. Suggest a few gift ideas under ${budget}.",
      p=GIFT_PEOPLE, hobbies=GIFT_HOBBIES, budget=(50, 100)),
    T("I am {t[0]} and I have to explain {t[1]} to {t[2]} in a five-minute talk. What should I include, and what should I leave out?",
      t=TALK_CASES),
    T("Write a cover letter for a {j[0]} position at {company}. Mention my {years} years of experience {j[1]} and keep it under 250 words.",
      j=JOB_CASES, company=COMPANY_KINDS, years=YEARS),
    T("We are a group of {g[0]} {g[1]} planning a three-day trip to {city} in {season}. We like {likes}. Suggest a plan for each day.",
      g=TRAVEL_GROUPS, city=CITIES, season=SEASONS, likes=TRAVEL_LIKES),
    T("My team keeps {problem}. As the team lead, what could I change over the next month, and how would I know if it worked?",
      problem=TEAM_PROBLEMS),
    T("A friend of mine says that {myth}. Is that true? Please explain the evidence briefly.", myth=MYTHS),
    T("I bought {c[0]} online and it arrived {c[1]}. The seller has not answered my messages for a week. Write a firm but polite complaint.",
      c=COMPLAINTS),
    T("My {k[0]} asked me {q}, and I don't know how to answer in a way {k[1]} will understand. Can you help?", k=CHILDREN, q=KID_QUESTIONS),
    T("I work {r[0]}, I have {r[1]}, and I want to {r[2]}. What would a realistic weekly routine look like?", r=ROUTINE_CASES),
    T("I'm writing a {o[0]} for {o[1]}. Here is my opening sentence: \"{o[2]}\" How can I make it more engaging?", o=OPENINGS),
)

EXPLAIN_TEMPLATES = (
    T("Explain {concept} in simple terms.", concept=CONCEPTS),
    T("Can you explain {concept} to {audience}?", concept=CONCEPTS, audience=AUDIENCES),
    T("What is {concept}, and why does it matter?", concept=CONCEPTS),
    T("Give me a short explanation of {concept}.", concept=CONCEPTS),
    T("Explain {concept} in three sentences.", concept=CONCEPTS),
    T("Explain {concept} using an analogy.", concept=CONCEPTS),
    T("What is {concept}?", concept=CONCEPTS),
    T("How does {thing} work?", thing=PROCESSES),
    T("Explain how {thing} works, step by step.", thing=PROCESSES),
    T("Why {q}?", q=WHY_QUESTIONS),
    T("Explain the main causes of {event}.", event=HISTORICAL_EVENTS),
    T("What were the consequences of {event}?", event=HISTORICAL_EVENTS),
    T("What role does {r[0]} play in {r[1]}?", r=ROLES),
)

LIST_TEMPLATES = (
    T("List {n} {things}.", n=NUMBERS, things=LIST_THINGS),
    T("Give me {n} ideas for {occasion}.", n=NUMBERS, occasion=OCCASIONS),
    T("Name {n} {category}.", n=("three", "four", "five"), category=CATEGORIES),
    T("What are {n} common mistakes people make when {activity}?", n=("three", "five"), activity=MISTAKE_ACTIVITIES),
    T("Brainstorm {n} names for {target}.", n=("five", "ten"), target=NAMING_TARGETS),
    T("List the main {f[0]} of {f[1]}.", f=FEATURES),
    T("Make a checklist for {task}.", task=CHECKLISTS),
)

COMPARE_TEMPLATES = (
    T("Compare {p[0]} and {p[1]}.", p=COMPARE_PAIRS),
    T("What is the difference between {p[0]} and {p[1]}?", p=COMPARE_PAIRS),
    T("How do {p[0]} and {p[1]} differ?", p=COMPARE_PAIRS),
    T("Compare {p[0]} and {p[1]} in a short table.", p=COMPARE_PAIRS),
    T("What are the main similarities and differences between {p[0]} and {p[1]}?", p=COMPARE_PAIRS),
    T("Which is better for {w[0]}: {w[1]} or {w[2]}?", w=WHICH_BETTER),
)

SUMMARIZE_TEMPLATES = tuple(T(text, passage=PASSAGES) for text in SUMMARY_TEMPLATES)

REWRITE_FAMILY_TEMPLATES = tuple(T(text, s=SENTENCES) for text in REWRITE_TEMPLATES) + (
    T("Correct the grammar and spelling in this sentence: {s}", s=ERROR_SENTENCES),
    T("Fix the mistakes in this sentence: {s}", s=ERROR_SENTENCES),
    T("Proofread this: {s}", s=ERROR_SENTENCES),
)

TRANSLATE_TEMPLATES = (
    T("Translate into {lang}: {s}", lang=LANGUAGES, s=TRANSLATE_SENTENCES),
    T("How do you say \"{s}\" in {lang}?", lang=LANGUAGES, s=TRANSLATE_SENTENCES),
    T("Translate the following sentence from English to {lang}: {s}", lang=LANGUAGES, s=TRANSLATE_SENTENCES),
    T("Please translate this into {lang}, keeping the tone polite: {s}", lang=LANGUAGES, s=TRANSLATE_SENTENCES),
    T("Translate this {f[0]} sentence into English: {f[1]}", f=FOREIGN_SENTENCES),
    T("What does \"{f[1]}\" mean in English?", f=FOREIGN_SENTENCES),
)

FAMILIES = (
    Family("explain", 340, EXPLAIN_TEMPLATES),
    Family("list", 240, LIST_TEMPLATES),
    Family("compare", 200, COMPARE_TEMPLATES),
    Family("summarize", 180, SUMMARIZE_TEMPLATES),
    Family("rewrite", 230, REWRITE_FAMILY_TEMPLATES),
    Family("translate", 150, TRANSLATE_TEMPLATES),
    Family("creative", 380, CREATIVE_TEMPLATES),
    Family("math", 270, MATH_TEMPLATES),
    Family("coding", 320, CODING_TEMPLATES),
    Family("advice", 230, ADVICE_TEMPLATES),
    Family("definition", 200, DEFINITION_TEMPLATES),
    Family("howto", 220, HOWTO_TEMPLATES),
    Family("trivia", 320, TRIVIA_TEMPLATES),
    Family("opinion", 160, OPINION_TEMPLATES),
    Family("recommend", 220, RECOMMEND_TEMPLATES),
    Family("misc", 150, MISC_TEMPLATES),
    Family("context", 280, CONTEXT_TEMPLATES),
)


# ---------------------------------------------------------------------------------------------


def _rank(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


def _pick(family: Family) -> list[str]:
    """Spread the family's quota evenly over its templates; within a template pick by hash."""
    chosen: list[str] = []
    seen: set[str] = set()
    remaining = family.quota
    # Templates with few candidates give their unused share to the ones after them.
    templates = sorted(family.templates, key=lambda t: len(t.candidates()))
    for index, template in enumerate(templates):
        share = -(-remaining // (len(templates) - index))
        pool = sorted({_tidy(c) for c in template.candidates()} - seen, key=lambda c: _rank(family.name, c))
        taken = pool[:share]
        chosen.extend(taken)
        seen.update(taken)
        remaining -= len(taken)
    return chosen


def generate() -> list[dict[str, str]]:
    """All built-in prompts as records {"prompt", "category"}, deduplicated, in a fixed shuffled order."""
    records: dict[str, str] = {}
    for family in FAMILIES:
        for prompt in _pick(family):
            words = len(prompt.split())
            if not 1 <= words <= MAX_WORDS:
                raise ValueError(f"prompt of {words} words in family {family.name}: {prompt[:60]}")
            records.setdefault(prompt, family.name)
    ordered = sorted(records, key=lambda prompt: _rank(ORDER_SALT, prompt))
    return [{"prompt": prompt, "category": records[prompt]} for prompt in ordered]


def render() -> str:
    return "".join(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n" for record in generate())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.name} is stale: run python -m offswitch.resources.prompts.generate_builtin", file=sys.stderr)
            return 1
        return 0
    from offswitch.fsutil import atomic_write_text

    atomic_write_text(OUTPUT, text)
    print(f"wrote {text.count(chr(10))} prompts to {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
